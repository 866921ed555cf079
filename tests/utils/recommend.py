"""An app with a sci-fi / cooking / romance catalog, a summarizer fake that can also
be scripted to explain recommendations, and the movable clock of the profile tests."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from service.core.config import Settings
from service.llm.fake import prompt_name
from service.llm.runtime import LLMRuntime
from service.recommend.service import EXPLAIN_PROMPT
from service.vectors.embeddings import Embedder
from tests.utils.api import NOW, app_client, event, item, make_tenant
from tests.utils.fakes import Clock, TopicSummarizer
from tests.utils.profiles import CATALOG, START, TOPICS, ProfileApp

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
    """The topic summarizer, except for calls of the explanation prompt: those go to
    `explain`, which gets the prompt text and returns the reply (or raises, to play a
    dead server)."""

    explain: Callable[[str], str] | None = None
    explain_prompts: list[str] = []

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        if prompt_name(run_manager) != EXPLAIN_PROMPT:
            return super()._generate(messages, stop, run_manager, **kwargs)
        prompt = "\n".join(str(m.content) for m in messages)
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
def catalog_app(settings: Settings, model: BaseChatModel,
                embedder: Embedder) -> Iterator[tuple[Any, Clock]]:
    """Tenant `acme` with CATALOG + MORE indexed, on a scripted model and a movable clock."""
    clock = Clock(START)
    with app_client(settings, LLMRuntime(settings, chat_model=model), clock=clock,
                    embedder=embedder) as client:
        t = make_tenant(client, "acme")
        r = t.put("/v1/items", json={"items": CATALOG + MORE})
        assert r.json()["indexed"] == len(CATALOG + MORE), r.text
        yield t, clock


@dataclass
class RecommendApp(ProfileApp):
    model: ExplainingSummarizer


def make_recommend_app(settings: Settings, embedder: Embedder) -> Iterator[RecommendApp]:
    model = ExplainingSummarizer(replies=[], calls=[], topics=TOPICS, explain_prompts=[])
    with catalog_app(settings, model, embedder) as (t, clock):
        yield RecommendApp(t, model, clock, settings)


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
    from service.profiles.store import RefreshInput, commit_merge
    from service.users.models import User

    assert t.put("/v1/items", json={"items": CATALOG + MORE}).status_code == 200
    consumed = [i for _, items in LIKED_FACETS.values() for i in items]
    r = t.post("/v1/events", json={"events": [
        event("u1", "like", i, ts=NOW - timedelta(hours=n + 1), event_id=f"e-{i}")
        for n, i in enumerate(consumed)]})
    assert r.status_code == 200, r.text
    app = client.app
    labels = list(LIKED_FACETS)
    box = app.state.container
    vectors = box.embedder.embed([f"{label}. {LIKED_FACETS[label][0]}" for label in labels])
    with box.sessions() as session:
        user = session.scalars(select(User).where(User.user_id == "u1")).one()
        commit_merge(session, user, box.profiles.rules, NOW, "refresh", RefreshInput(new=[
            NewFacet(label=label, description=LIKED_FACETS[label][0], strength=0.9,
                     polarity="like", evidence=tuple(f"e-{i}" for i in LIKED_FACETS[label][1]),
                     embedding=tuple(vec))
            for label, vec in zip(labels, vectors, strict=True)]))
    return consumed


# -- a tenant with trained models ---------------------------------------------------------

# Each crowd walks its topic's items in this order, so co-occurrence, transitions and the
# sequence model all learn "after these come those".
CROWD_PATHS = {
    "scifi": ["alien", "dune", "solaris", "interstellar", "gravity", "arrival", "foundation",
              "hyperion"],
    "cooking": ["bread", "pasta", "curry", "ramen", "tacos", "gardening"],
    "romance": ["notebook", "casablanca", "pride", "loveactually"],
}


def send_crowd(t: Any, clock: Clock, per_topic: int = 16, seed: int = 0) -> None:
    """`per_topic` users per topic, each liking 5+ consecutive items of its path (wrapping),
    one a day, all before the clock's now; romance fans also like two cooking items."""
    import random
    from datetime import timedelta

    rng = random.Random(seed)
    now = clock()
    events = []
    for topic, path in CROWD_PATHS.items():
        for n in range(per_topic):
            user = f"crowd-{topic}-{n}"
            start = rng.randrange(len(path))
            walk = [path[(start + s) % len(path)] for s in range(min(len(path), 6))]
            if topic == "romance":
                walk += ["bread", "pasta"]
            days = len(walk) + rng.randrange(10)
            for s, item_id in enumerate(walk):
                events.append(event(user, "like", item_id, event_id=f"{user}-{s}",
                                    ts=now - timedelta(days=days - s, hours=n)))
    r = t.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text


def train_models(t: Any, settings: Settings, *, ranker: bool = True) -> Any:
    """Train the tenant's models as `interest-tracker train` would (a short sequence-model
    budget), with the learned ranker over the catalog's real item vectors; the app's
    registry sees the new version on its next request."""
    from functools import partial

    from sqlalchemy import select

    from service.catalog.models import Item
    from service.tenants.service import tenant_by_name
    from service.training.contract import ModelMeta
    from service.training.data import item_texts_from_database, log_from_database
    from service.training.ranker import train_ranker
    from service.training.service import train_log
    from service.training.store import ArtifactStore, models_root, new_version

    app = t.client.app
    with app.state.container.sessions() as session:
        tenant = tenant_by_name(session, t.name)
        assert tenant is not None
        log = log_from_database(session, tenant.id, settings.rating_max)
        texts = item_texts_from_database(session, tenant.id)
        versions = {i: h or "" for i, h in session.execute(
            select(Item.item_id, Item.indexed_hash).where(Item.tenant_id == tenant.id))}
    vectors = app.state.container.vectors.vectors(tenant.id, "items", versions)
    trainer = partial(train_ranker, item_vectors=vectors) if ranker else None
    # By epochs, not seconds: the same models however busy the machine is.
    trained = train_log(log, texts, sequence_epochs=15, heldout_users=50,
                        ranker_trainer=trainer)
    meta = ModelMeta(version=new_version(), tenant_id=tenant.id, trained_at=NOW_ISO,
                     events_used=len(log), users=len(log.user_ids),
                     items=len(trained.models.item_ids), sources=list(trained.models.sources),
                     ranker=trained.ranker is not None, heldout=trained.heldout,
                     notes=trained.notes)
    ArtifactStore(models_root(settings)).save(meta, trained.models, trained.ranker)
    app.state.container.models.check_seconds = 0  # look at the pointer on every request
    return meta


NOW_ISO = "2026-01-01T00:00:00+00:00"


def write_facets(t: Any, user: str, facets: dict[str, tuple[str, str, list[str]]],
                 at: Any) -> None:
    """Facets (label: (description, polarity, evidence ids)) written by the merge path
    directly, as a refresh would, without a summarizer."""
    from sqlalchemy import select

    from service.profiles.merge import NewFacet
    from service.profiles.store import RefreshInput, commit_merge
    from service.users.models import User

    app = t.client.app
    labels = list(facets)
    box = app.state.container
    vectors = box.embedder.embed([f"{label}. {facets[label][0]}" for label in labels])
    with box.sessions() as session:
        row = session.scalars(select(User).where(User.user_id == user)).one()
        commit_merge(session, row, box.profiles.rules, at, "refresh", RefreshInput(new=[
            NewFacet(label=label, description=facets[label][0], strength=0.9,
                     polarity=facets[label][1],  # type: ignore[arg-type]
                     evidence=tuple(facets[label][2]), embedding=tuple(vec))
            for label, vec in zip(labels, vectors, strict=True)]))
