"""The popular list's kept rankings (`popular.PopularCounts`): what a user without a
profile sees must follow new events, the clock and catalog edits at once, exactly as a
fresh count would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from service.core.config import Settings
from service.core.db import make_engine, make_sessionmaker
from service.recommend.lists import RecommendationRequest
from service.recommend.popular import PopularCounts, popular_counts, rank_popular
from service.recommend.ranking import RankingParams
from service.users.models import User
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore
from tests.utils.api import event
from tests.utils.profiles import ProfileApp
from tests.utils.recommend import make_recommend_app


@pytest.fixture
def app(settings: Settings, embedder: Embedder) -> Iterator[ProfileApp]:
    yield from make_recommend_app(settings, embedder)


def popular(app: ProfileApp, user: str = "new", **params: Any) -> list[tuple[str, str]]:
    r = app.t.get(f"/v1/users/{user}/recommendations", params={"k": 3, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "popular"
    return [(i["item_id"], i["explanation"]) for i in body["items"]]


def views(app: ProfileApp, user: str, item_ids: list[str], days_ago: float,
          tag: str) -> None:
    now = app.clock()
    app.send(user, *[event(user, "view", i, ts=now - timedelta(days=days_ago, minutes=n),
                           event_id=f"{tag}-{n}") for n, i in enumerate(item_ids)])


def test_new_events_reorder_the_popular_list_on_the_next_request(app: ProfileApp) -> None:
    views(app, "fans", ["interstellar", "interstellar", "arrival"], 1, "a")
    app.send("new", event("new", "search", None, text="anything", ts=app.clock()))
    assert [i for i, _ in popular(app)][:2] == ["interstellar", "arrival"]
    views(app, "others", ["arrival"] * 3, 1, "b")
    first = popular(app)
    assert first[:2] == [
        ("arrival", "Popular in the last 30 days: 4 interactions from other users."),
        ("interstellar", "Popular in the last 30 days: 2 interactions from other users.")]


def test_an_event_leaving_the_window_moves_its_item_to_all_time(app: ProfileApp) -> None:
    views(app, "fans", ["gravity", "gravity"], 29, "a")
    views(app, "fans", ["ramen"], 5, "b")
    app.send("new", event("new", "search", None, text="anything", ts=app.clock()))
    assert popular(app)[:2] == [
        ("gravity", "Popular in the last 30 days: 2 interactions from other users."),
        ("ramen", "Popular in the last 30 days: 1 interaction from other users.")]
    app.clock.advance(days=2)  # gravity's views are 31 days old now; no new event
    assert popular(app)[:2] == [
        ("ramen", "Popular in the last 30 days: 1 interaction from other users."),
        ("gravity", "Popular overall: 2 interactions from other users.")]


def test_an_event_dated_ahead_counts_once_its_time_comes(app: ProfileApp) -> None:
    views(app, "fans", ["ramen"], 1, "a")
    views(app, "fans", ["tacos", "tacos"], -1, "b")  # a day ahead of the clock
    app.send("new", event("new", "search", None, text="anything", ts=app.clock()))
    assert popular(app)[0][0] == "ramen"
    app.clock.advance(days=2)
    assert popular(app)[0][0] == "tacos"


def test_a_changed_title_shows_at_once(app: ProfileApp) -> None:
    views(app, "fans", ["ramen"], 1, "a")
    app.send("new", event("new", "search", None, text="anything", ts=app.clock()))
    r = app.t.get("/v1/users/new/recommendations", params={"k": 1})
    assert r.json()["items"][0]["title"] == "Ramen from Scratch"
    r = app.t.put("/v1/items", json={"items": [{
        "item_id": "ramen", "title": "Ramen at Home", "category": "book",
        "tags": ["cooking"], "description": "Broths, noodles and toppings made at home"}]})
    assert r.status_code == 200, r.text
    r = app.t.get("/v1/users/new/recommendations", params={"k": 1})
    assert r.json()["items"][0]["title"] == "Ramen at Home"


def test_a_cut_ranking_gives_the_list_a_full_count_gives(app: ProfileApp,
                                                         settings: Settings) -> None:
    """A heavy user reads past the kept rows: the rest comes from the database, in order."""
    views(app, "fans", ["interstellar"] * 4 + ["arrival"] * 3 + ["ramen"] * 2
          + ["gravity", "pride", "tacos"], 1, "a")
    app.watch("heavy", ["interstellar", "arrival"], "h")
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with make_sessionmaker(engine)() as session:
            heavy = session.scalars(select(User).where(User.user_id == "heavy")).one()
            store = VectorStore.for_settings(settings)

            def listed(counts: PopularCounts | None, category: str | None = None
                       ) -> list[tuple[str, str | None, float]]:
                ranked = rank_popular(session, heavy, store, [], {"interstellar", "arrival"},
                                      app.clock(), RecommendationRequest(k=4, category=category),
                                      RankingParams(), counts)
                return [(p.item_id, p.popular_tier, p.score) for p in ranked.picks]

            full = listed(None)
            assert full[:2] == [("ramen", "recent", 2.0), ("gravity", "recent", 1.0)]
            assert listed(PopularCounts(rows=1)) == full
            assert listed(PopularCounts(rows=1), "book") == listed(None, "book")
    finally:
        engine.dispose()


def test_rankings_are_kept_per_database_and_bounded(app: ProfileApp, settings: Settings,
                                                    tmp_path: Any) -> None:
    views(app, "fans", ["ramen"], 1, "a")
    app.send("new", event("new", "search", None, text="anything", ts=app.clock()))
    popular(app)
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with make_sessionmaker(other)() as session:
            assert len(popular_counts(session)) == 0  # not the app's rankings
    finally:
        other.dispose()
    counts = PopularCounts(tenants=1)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with make_sessionmaker(engine)() as session:
            for tenant_id in (1, 2, 3):
                counts.ranking(session, tenant_id, "recent", app.clock())
            assert len(counts) == 2  # one tenant's two tiers at most
    finally:
        engine.dispose()
