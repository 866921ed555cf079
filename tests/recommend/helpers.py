"""An app with a sci-fi / cooking / romance catalog, a summarizer fake that can also
be scripted to explain recommendations, and the movable clock of the profile tests."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from tests.conftest import app_client, item, make_tenant
from tests.profiles.helpers import Clock, TopicSummarizer
from tests.profiles.test_profiles import CATALOG, START, TOPICS, ProfileApp

EXPLAIN_MARK = "why an item was recommended"
EVIDENCE_LINE = re.compile(r'^(\S+) \| [^|]+\| "(.*)"$')

# The profile tests' catalog (no categories) plus items with categories.
MORE = [
    item("interstellar", title="Interstellar", category="film", tags=["sci-fi", "space"],
         description="Astronauts travel through a wormhole to find a new home"),
    item("gravity", title="Gravity", category="film", tags=["sci-fi", "space"],
         description="An astronaut stranded in orbit fights to return to Earth"),
    item("arrival", title="Arrival", category="film", tags=["sci-fi"],
         description="A linguist learns to talk with alien visitors"),
    item("foundation", title="Foundation", category="book", tags=["sci-fi"],
         description="A galactic empire falls and mathematicians plan the next one"),
    item("hyperion", title="Hyperion", category="book", tags=["sci-fi", "space"],
         description="Pilgrims cross a far planet to meet a time-travelling monster"),
    item("ramen", title="Ramen from Scratch", category="book", tags=["cooking"],
         description="Broths, noodles and toppings made at home"),
    item("tacos", title="Street Tacos", category="film", tags=["cooking"],
         description="A cook travels Mexico learning tortillas and salsas"),
    item("casablanca", title="Casablanca", category="film", tags=["romance", "drama"],
         description="A wartime romance in Morocco"),
    item("pride", title="Pride and Prejudice", category="book", tags=["romance"],
         description="A romantic novel of manners and love"),
    item("loveactually", title="Love Actually", category="film", tags=["romance", "comedy"],
         description="Romantic comedy about love at Christmas"),
    item("gardening", title="Tomato Gardening", category="book", tags=["garden"],
         description="Growing tomatoes on a balcony"),
]
SCIFI = {"alien", "dune", "solaris", "interstellar", "gravity", "arrival", "foundation",
         "hyperion"}
ROMANCE = {"notebook", "casablanca", "pride", "loveactually"}
TITLES = {i["item_id"]: i["title"] for i in CATALOG + MORE}
CATEGORIES = {i["item_id"]: i.get("category") for i in CATALOG + MORE}


class ExplainingSummarizer(TopicSummarizer):
    """The topic summarizer, except for explanation prompts: those go to `explain`,
    which gets the prompt text and returns the reply (or raises, to play a dead server)."""

    explain: Callable[[str], str] | None = None
    explain_prompts: list[str] = []

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        if EXPLAIN_MARK not in prompt:
            return super()._generate(messages, stop, run_manager, **kwargs)
        self.explain_prompts.append(prompt)
        assert self.explain is not None, "no explanation scripted"
        reply = self.explain(prompt)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])


def given_evidence(prompt: str) -> list[tuple[str, str]]:
    """(event id, title) of the activity lines an explanation prompt carries."""
    block = prompt.rsplit("<activity>", 1)[1].split("</activity>")[0]
    found = (EVIDENCE_LINE.match(line.strip()) for line in block.strip().splitlines())
    return [(m[1], json.loads(f'"{m[2]}"')) for m in found if m]


@contextmanager
def catalog_app(settings: Settings, model: BaseChatModel) -> Iterator[tuple[Any, Clock]]:
    """Tenant `acme` with CATALOG + MORE indexed, on a scripted model and a movable clock."""
    clock = Clock(START)
    with app_client(settings, LLMRuntime(settings, chat_model=model), clock=clock) as client:
        t = make_tenant(client, "acme")
        r = t.put("/v1/items", json={"items": CATALOG + MORE})
        assert r.json()["indexed"] == len(CATALOG + MORE), r.text
        yield t, clock


def make_recommend_app(settings: Settings) -> Iterator[ProfileApp]:
    model = ExplainingSummarizer(replies=[], calls=[], topics=TOPICS, explain_prompts=[])
    with catalog_app(settings, model) as (t, clock):
        yield ProfileApp(t, model, clock, settings)


# Two like-interests and the items that evidence them (the real-model tests' profile).
LIKED_FACETS = {
    "Science fiction films": ("Watches and rates space and sci-fi movies.",
                              ["alien", "dune", "solaris"]),
    "Home cooking": ("Follows recipes and cooking shows.", ["bread", "pasta"]),
}


@contextmanager
def liked_profile_app(tmp_path: Path, llm: Any) -> Iterator[tuple[Any, list[str]]]:
    """A real app on `llm` whose user u1 has the LIKED_FACETS profile; yields the tenant
    client and u1's liked items."""
    settings = Settings(data_dir=tmp_path / "data", refresh_worker=False)
    with app_client(settings, llm) as client:
        t = make_tenant(client, "acme")
        yield t, seed_liked_profile(client, t)


def seed_liked_profile(client: Any, t: Any) -> list[str]:
    """The catalog, u1's likes of LIKED_FACETS' items, and those facets written by the merge
    path directly (for tests about explaining, not summarizing). Returns the liked items."""
    from datetime import timedelta

    from sqlalchemy import select

    from service.profiles.merge import NewFacet
    from service.profiles.service import RefreshInput, commit_merge
    from service.users.models import User
    from tests.conftest import NOW, event

    assert t.put("/v1/items", json={"items": CATALOG + MORE}).status_code == 200
    consumed = [i for _, items in LIKED_FACETS.values() for i in items]
    r = t.post("/v1/events", json={"events": [
        event("u1", "like", i, ts=NOW - timedelta(hours=n + 1), event_id=f"e-{i}")
        for n, i in enumerate(consumed)]})
    assert r.status_code == 200, r.text
    app = client.app
    labels = list(LIKED_FACETS)
    vectors = app.state.embedder.embed([f"{label}. {LIKED_FACETS[label][0]}" for label in labels])
    with app.state.sessions() as session:
        user = session.scalars(select(User).where(User.user_id == "u1")).one()
        commit_merge(session, user, app.state.profiles, NOW, "refresh", RefreshInput(new=[
            NewFacet(label=label, description=LIKED_FACETS[label][0], strength=0.9,
                     polarity="like", evidence=tuple(f"e-{i}" for i in LIKED_FACETS[label][1]),
                     embedding=tuple(vec))
            for label, vec in zip(labels, vectors, strict=True)]))
    return consumed
