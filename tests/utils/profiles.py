"""The profile tests' world: a catalog of three topics, a summarizer fake that names
groups by keyword, a clock moved by days, and an app built on them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from service.profiles.drafting import SUPPORT_FULL
from service.vectors.embeddings import Embedder
from tests.utils.api import NOW, ApiTenant, app_client, event, item, make_tenant
from tests.utils.fakes import Clock, TopicSummarizer, topic_summarizer

START = NOW - timedelta(days=90)  # events must not lie in the real future

TOPICS = {
    "Science fiction films": ("sci-fi", "Watches and rates space and sci-fi movies.", "like"),
    "Home cooking": ("cooking", "Follows recipes and cooking shows.", "like"),
    "Romance films": ("romance", "Rates romantic dramas low.", "avoid"),
    "Jazz music": ("jazz", "Talks about jazz.", "like"),
}

CATALOG = [
    item("alien", title="Alien", description="Space horror on a cargo ship", tags=["sci-fi"]),
    item("dune", title="Dune", description="A desert planet and a prophecy", tags=["sci-fi"]),
    item("solaris", title="Solaris", description="A station above a strange ocean",
         tags=["sci-fi"]),
    item("bread", title="Sourdough at Home", description="Baking bread step by step",
         tags=["cooking"]),
    item("pasta", title="Fresh Pasta", description="Hand-made pasta and sauces",
         tags=["cooking"]),
    item("curry", title="Weeknight Curries", description="Quick curries from scratch",
         tags=["cooking"]),
    item("notebook", title="The Notebook", description="A romance across decades",
         tags=["romance"]),
]


@dataclass
class ProfileApp:
    t: ApiTenant
    model: TopicSummarizer
    clock: Clock
    settings: Settings

    def send(self, user: str, *events: dict[str, Any]) -> None:
        r = self.t.post("/v1/events", json={"events": list(events)})
        assert r.status_code == 200, r.text

    def watch(self, user: str, item_ids: list[str], tag: str) -> None:
        """Events a few hours apart ending at the clock's now."""
        now = self.clock()
        self.send(user, *[
            event(user, "like", i, ts=now - timedelta(hours=len(item_ids) - n),
                  event_id=f"{tag}-{i}")
            for n, i in enumerate(item_ids)
        ])

    def refresh(self, user: str = "u1") -> dict[str, Any]:
        r = self.t.post(f"/v1/users/{user}/profile/refresh")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def profile(self, user: str = "u1") -> dict[str, Any]:
        r = self.t.get(f"/v1/users/{user}/profile")
        assert r.status_code == 200, r.text
        return dict(r.json())


def born(likes: int, share: float = 1.0) -> float:
    """A new facet's stored strength: eta * sqrt(support * share), likes all agreeing."""
    root: float = (min(1.0, likes / SUPPORT_FULL) * share) ** 0.5
    return 0.5 * root


def strengths(profile: dict[str, Any]) -> dict[str, float]:
    return {f["label"]: f["strength"] for f in profile["facets"]}


def make_profile_app(settings: Settings, embedder: Embedder) -> Iterator[ProfileApp]:
    model = topic_summarizer(TOPICS)
    clock = Clock(START)
    with app_client(settings, LLMRuntime(settings, chat_model=model), clock=clock,
                    embedder=embedder) as client:
        t = make_tenant(client, "acme")
        assert t.put("/v1/items", json={"items": CATALOG}).json()["indexed"] == len(CATALOG)
        yield ProfileApp(t, model, clock, settings)
