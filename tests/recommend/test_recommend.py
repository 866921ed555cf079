"""Recommendations over HTTP: real Chroma in a temp folder, profiles built by the real
refresh path with a summarizer fake. Embeddings are hashed words, or MiniLM in the tests
marked slow, which need its sense of meaning (labels, avoid-facets, spread over topics)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from service.core.config import Settings
from service.recommend import service as recommend_service
from service.recommend.candidates import retrieve
from service.recommend.models import RecommendationTrace
from service.vectors.embeddings import Embedder
from tests.utils.api import event, make_tenant
from tests.utils.profiles import ProfileApp, born
from tests.utils.recommend import (
    CATEGORIES,
    ROMANCE,
    SCIFI,
    TITLES,
    RecommendApp,
    given_evidence,
    make_recommend_app,
)


@pytest.fixture
def app(settings: Settings, embedder: Embedder) -> Iterator[RecommendApp]:
    yield from make_recommend_app(settings, embedder)


def recommend(app: ProfileApp, user: str = "u1", **params: Any) -> dict[str, Any]:
    r = app.t.get(f"/v1/users/{user}/recommendations", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def trace(app: ProfileApp, recommendation_id: str) -> dict[str, Any]:
    r = app.t.get(f"/v1/recommendations/{recommendation_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def history(app: ProfileApp, user: str = "u1") -> dict[str, dict[str, Any]]:
    r = app.t.get(f"/v1/users/{user}/events", params={"limit": 200})
    assert r.status_code == 200, r.text
    return {e["event_id"]: e for e in r.json()["events"]}


FROM_CATALOG = "From the catalog; not personal, and not popular yet."


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_a_sci_fi_fan_gets_unseen_sci_fi_explained_by_their_own_events(
        app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune", "solaris"], "a")
    app.refresh()
    body = recommend(app, k=4)
    assert body["source"] == "profile" and body["recommendation_id"].startswith("rec_")
    assert body["generated_at"].startswith(app.clock().date().isoformat())
    assert len(body["items"]) == 4
    assert not {"alien", "dune", "solaris"} & set(ids(body))  # consumed
    assert set(ids(body)[:2]) <= SCIFI  # the best matches are unseen sci-fi titles

    mine = history(app)
    top = body["items"][0]
    because = top["because"]
    assert because["label"] == "Science fiction films"
    # Three agreeing likes, the whole of the user's new likes: eta x sqrt(3/5 x 1), not
    # decayed yet.
    assert because["strength"] == pytest.approx(born(3), rel=1e-3)
    assert 0 < top["score"] == pytest.approx(because["strength"] * because["similarity"],
                                             rel=1e-4)
    for entry in body["items"]:
        for e in entry["because"]["evidence"]:
            stored = mine[e["event_id"]]  # every cited event is in the user's history
            assert (e["type"], e["item_id"]) == (stored["type"], stored["item_id"])
            assert e["title"] == TITLES[e["item_id"]]
    # The template names the facet and the two evidence items closest to the item.
    first, second = (e["title"] for e in because["evidence"][:2])
    assert top["explanation"] == (
        f"Because you liked {first} and {second} (Science fiction films).")
    assert top["explanation_source"] == "template"


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_strengths_are_decayed_to_now_and_a_faded_interest_yields_to_a_fresh_one(
        app: ProfileApp) -> None:
    # Five likes: a sci-fi facet as strong as a first refresh makes one, so that two
    # half-lives and one refresh that passes it over later it is faded but not archived.
    app.watch("u1", ["alien", "dune", "solaris", "interstellar", "gravity"], "a")
    app.refresh()
    app.clock.advance(days=7)
    app.watch("u1", ["bread"], "b")
    app.refresh()
    app.clock.advance(days=7)
    body = recommend(app, k=3)
    labels = [i["because"]["label"] for i in body["items"]]
    assert labels[0] == "Home cooking"
    strengths = {i["because"]["label"]: i["because"]["strength"] for i in body["items"]}
    # Born at eta x sqrt(support x share) of its refresh's likes; a week: one half-life.
    assert strengths["Home cooking"] == pytest.approx(born(1) / 2, rel=1e-3)
    stored = trace(app, body["recommendation_id"])
    facets = {f["label"]: f for f in stored["facets"]}
    # Stronger at birth (five likes against one), but two half-lives old, and it lost
    # what cooking gained when that refresh passed it over.
    assert facets["Science fiction films"]["strength"] == pytest.approx(
        born(5) / 4 * (1 - born(1)), rel=1e-3)
    # The fading facet asked for fewer candidates than the fresh one.
    assert (facets["Science fiction films"]["quota"] < facets["Home cooking"]["quota"])


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_items_near_an_avoid_facet_are_dropped(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")  # sci-fi liked, romance disliked: avoided
    app.send("u1", event("u1", "dislike", "notebook", ts=app.clock(), event_id="a-notebook"))
    facets = {f["label"]: f for f in app.refresh()["facets"]}
    assert facets["Romance films"]["polarity"] == "avoid"
    app.watch("u2", ["alien"], "b")  # the same taste, without the dislike
    app.refresh("u2")

    avoiding = recommend(app, "u1", k=20)
    neutral = recommend(app, "u2", k=20)
    assert not ROMANCE & set(ids(avoiding))
    assert {"casablanca", "loveactually", "pride"} & set(ids(neutral))  # so it can fail
    stored = trace(app, avoiding["recommendation_id"])
    romance_id = facets["Romance films"]["facet_id"]
    status = {c["item_id"]: c for c in stored["candidates"]}
    dropped = {i for i, c in status.items() if c["status"] == "dropped_avoid"}
    assert {"casablanca", "loveactually"} <= dropped
    for item_id in dropped:
        assert status[item_id]["similarities"][romance_id] >= 0.5
    assert stored["excluded"]["dropped_avoid"] == len(dropped)
    # Below the drop threshold but above the penalty one, the score pays for it.
    penalised = [c for c in stored["candidates"] if c["avoid_penalty"] > 0]
    for c in penalised:
        # The trace rounds each of the three to 6 places: up to 1.5e-6 apart.
        assert c["score"] == pytest.approx(c["base_score"] - c["avoid_penalty"], abs=2e-6)
        assert 0.4 <= c["similarities"][romance_id] < 0.5 or c["status"] == "dropped_avoid"


def test_category_filter(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune", "bread"], "a")
    app.refresh()
    books = recommend(app, k=10, category="book")
    assert books["items"] and all(CATEGORIES[i] == "book" for i in ids(books))
    assert {"foundation", "hyperion"} <= set(ids(books))
    films = recommend(app, k=10, category="film")
    assert films["items"] and all(CATEGORIES[i] == "film" for i in ids(films))
    assert recommend(app, k=10, category="no-such-category")["items"] == []
    stored = trace(app, books["recommendation_id"])
    assert stored["parameters"]["category"] == "book"
    assert stored["excluded"]["category"] > 0  # films and uncategorised items were skipped


class RecordingStore:
    """Plays the item collection: fixed neighbours, filtered or not; records each call."""

    def __init__(self, unfiltered: list[str], filtered: list[str]) -> None:
        self.unfiltered, self.filtered = unfiltered, filtered
        self.calls: list[tuple[int, int, Any]] = []

    def nearest(self, tenant_id: int, kind: str, vectors: Any, n: int,
                where: Any = None) -> list[list[tuple[str, float]]]:
        self.calls.append((len(vectors), n, where))
        found = self.filtered if where else self.unfiltered
        return [[(i, 0.5) for i in found[:n]] for _ in range(len(vectors))]


@pytest.mark.parametrize(("unfiltered", "filtered_call"), [
    (["interstellar", "foundation", "hyperion", "ramen", "pride"], False),  # enough books
    (["interstellar", "gravity", "arrival", "foundation"], True),  # one book: ask filtered
])
def test_a_category_is_filtered_from_neighbours_and_asked_for_when_rare(
        app: ProfileApp, unfiltered: list[str], filtered_call: bool) -> None:
    store = RecordingStore(unfiltered, filtered=["foundation", "hyperion", "pride"])
    with app.t.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        got = retrieve(session, store, 1, np.ones((1, 384), dtype=np.float32),  # type: ignore[arg-type]
                       quotas=[5], consumed={"hyperion"}, category="book", floor=3)
    # Quota 5: ask 2 x 5 neighbours, 4 x that unfiltered; films never make it.
    assert store.calls[0] == (1, 40, None)
    if filtered_call:
        # Then its 1,000 nearest, then (10 + 1 consumed) with the filter.
        assert store.calls[1:] == [(1, 1000, None), (1, 11, {"category": "book"})]
        assert got.candidates == ["foundation", "pride"] and got.widened
    else:
        assert len(store.calls) == 1 and not got.widened
        assert got.candidates == ["foundation", "ramen", "pride"]
    assert got.consumed_seen == 1


def _used(*spans: tuple[int, int]) -> set[str]:
    return {f"n{n}" for start, stop in spans for n in range(start, stop)}


@pytest.mark.parametrize(("consumed", "calls"), [
    # 50 used; 2 of the first 10 neighbours free: that share asks for 40, which is enough.
    (_used((0, 8), (10, 30), (40, 62)), [10, 40]),
    # Free ones thin out further: past all 50 used (10 + 50) at last.
    (_used((0, 8), (10, 52)), [10, 40, 60]),
    # None of the first 10 free: the share guess is past 10 + 50, so that at once.
    (_used((0, 50)), [10, 60]),
    (set(), [10]),  # enough at once
])
def test_a_facet_whose_neighbours_were_used_asks_wider_only_as_far_as_needed(
        app: ProfileApp, consumed: set[str], calls: list[int]) -> None:
    neighbours = [f"n{n}" for n in range(200)]
    store = RecordingStore(neighbours, filtered=[])
    with app.t.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        got = retrieve(session, store, 1, np.ones((1, 384), dtype=np.float32),  # type: ignore[arg-type]
                       quotas=[5], consumed=consumed, category=None, floor=3)
    assert store.calls == [(1, n, None) for n in calls]
    # The same five nearest unconsumed, however far it had to ask.
    assert got.candidates == [i for i in neighbours if i not in consumed][:5]
    assert got.widened == (len(calls) > 1) and got.consumed_seen == len(consumed & set(
        neighbours[:calls[-1]]))


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_mmr_spreads_the_list_over_interests(app: ProfileApp) -> None:
    # Two likes each: two interests of equal weight (one like would be a weak facet).
    app.watch("u1", ["alien", "dune", "bread", "pasta"], "a")
    app.refresh()
    body = recommend(app, k=4)
    labels = {i["because"]["label"] for i in body["items"]}
    assert labels == {"Science fiction films", "Home cooking"}
    stored = trace(app, body["recommendation_id"])
    assert stored["parameters"]["mmr_lambda"] == 0.7 and stored["parameters"]["fusion"] == "max"
    returned = [c for c in stored["candidates"] if c["status"] == "returned"]
    assert sorted(c["mmr_rank"] for c in returned) == [0, 1, 2, 3]


def test_a_user_without_a_profile_gets_popular_items_labelled_as_such(app: RecommendApp) -> None:
    now = app.clock()
    popular = ["interstellar"] * 3 + ["arrival"] * 2 + ["ramen"]
    app.send("fans", *[event("fans", "view", i, ts=now - timedelta(days=1, minutes=n))
                       for n, i in enumerate(popular)])
    # Long ago: outside the 30-day window, so it does not count.
    app.send("fans", *[event("fans", "view", "gravity", ts=now - timedelta(days=40, minutes=n))
                       for n in range(5)])
    app.watch("new", ["interstellar"], "n")  # consumed, and no refresh: no profile
    body = recommend(app, "new", k=5)
    assert body["source"] == "popular"
    # Recently popular, then popular of all time, then the catalog by id to fill the list.
    assert ids(body) == ["arrival", "ramen", "gravity", "alien", "bread"]
    assert all(i["because"] is None for i in body["items"])
    assert [i["score"] for i in body["items"]] == [2, 1, 5, 0, 0]
    assert [i["explanation"] for i in body["items"][:4]] == [
        "Popular in the last 30 days: 2 interactions from other users.",
        "Popular in the last 30 days: 1 interaction from other users.",
        "Popular overall: 5 interactions from other users.",
        FROM_CATALOG,
    ]
    stored = trace(app, body["recommendation_id"])
    assert stored["source"] == "popular" and stored["facets"] == []
    assert [i["popular_tier"] for i in stored["items"]] == [
        "recent", "recent", "all_time", "catalog", "catalog"]
    assert stored["excluded"]["consumed"] == 1
    assert recommend(app, "new", k=5, category="book")["items"][0]["item_id"] == "ramen"
    # explain=llm has nothing to ground a model answer on: the template stays.
    assert recommend(app, "new", explain="llm")["items"][0]["explanation_source"] == "template"
    assert app.model.explain_prompts == []


def tiers(app: ProfileApp, body: dict[str, Any]) -> list[str]:
    return [i["popular_tier"] for i in trace(app, body["recommendation_id"])["items"]]


def test_a_user_who_used_every_popular_item_still_gets_a_full_list(app: ProfileApp) -> None:
    now = app.clock()
    recent = ["interstellar", "interstellar", "arrival", "ramen"]
    app.send("fans", *[event("fans", "view", i, ts=now - timedelta(days=2, minutes=n))
                       for n, i in enumerate(recent)])
    app.send("fans", *[event("fans", "view", i, ts=now - timedelta(days=60, minutes=n))
                       for n, i in enumerate(["gravity", "gravity", "gravity", "pride",
                                              "ramen"])])
    app.watch("heavy", ["interstellar", "arrival", "ramen"], "h")  # every recent one

    body = recommend(app, "heavy", k=4)
    assert body["source"] == "popular" and len(body["items"]) == 4
    assert not {"interstellar", "arrival", "ramen"} & set(ids(body))
    # All-time popularity first (old events count there), then the catalog by id.
    assert ids(body) == ["gravity", "pride", "alien", "bread"]
    assert tiers(app, body) == ["all_time", "all_time", "catalog", "catalog"]
    assert [i["explanation"] for i in body["items"]] == [
        "Popular overall: 3 interactions from other users.",
        "Popular overall: 1 interaction from other users.", FROM_CATALOG, FROM_CATALOG]
    assert [i["score"] for i in body["items"]] == [3, 1, 0, 0]
    stored = trace(app, body["recommendation_id"])
    assert stored["excluded"]["consumed"] == 3
    tier_of = {c["item_id"]: c["popular_tier"] for c in stored["candidates"]}
    assert tier_of["gravity"] == "all_time" and tier_of["alien"] == "catalog"

    # The category filter holds in every tier.
    books = recommend(app, "heavy", k=3, category="book")
    assert ids(books) == ["pride", "foundation", "gardening"]
    assert tiers(app, books) == ["all_time", "catalog", "catalog"]


def test_a_tenant_without_item_events_gets_catalog_items_labelled_as_such(
        app: ProfileApp) -> None:
    # A user exists once they send an event; a search names no item, so the tenant has
    # nothing to count, recently or ever.
    app.send("u1", event("u1", "search", None, text="something to watch", ts=app.clock()))
    body = recommend(app, k=3)
    assert body["source"] == "popular"
    assert ids(body) == sorted(TITLES)[:3]
    assert {i["explanation"] for i in body["items"]} == {FROM_CATALOG}
    assert all(i["score"] == 0 and i["because"] is None for i in body["items"])
    assert tiers(app, body) == ["catalog"] * 3


def test_k_beyond_the_unused_catalog_returns_what_exists(app: ProfileApp) -> None:
    app.send("fans", *[event("fans", "view", i, ts=app.clock() - timedelta(days=1))
                       for i in ["curry", "tacos"]])
    app.watch("u1", ["alien", "dune", "solaris"], "a")
    body = recommend(app, k=50)
    expected = set(TITLES) - {"alien", "dune", "solaris"}
    assert len(body["items"]) == len(expected) and set(ids(body)) == expected
    assert ids(body)[:2] == ["curry", "tacos"]
    assert tiers(app, body) == ["recent"] * 2 + ["catalog"] * (len(expected) - 2)


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_an_avoid_facet_holds_in_every_popular_tier(app: ProfileApp) -> None:
    now = app.clock()
    app.send("fans", *[event("fans", "view", i, ts=now - timedelta(days=1, minutes=n))
                       for n, i in enumerate(["loveactually", "loveactually", "gravity"])])
    app.send("fans", event("fans", "view", "casablanca", ts=now - timedelta(days=90)))
    # Romance, disliked: an avoid-facet and no likes.
    app.send("u1", event("u1", "dislike", "notebook", ts=now, event_id="a-notebook"))
    facets = app.refresh()["facets"]
    assert [f["polarity"] for f in facets] == ["avoid"]
    body = recommend(app, k=50)
    assert body["source"] == "popular" and ids(body)[0] == "gravity"
    assert not ROMANCE & set(ids(body))
    assert len(body["items"]) == len(TITLES) - 1 - len(ROMANCE - {"notebook"})
    stored = trace(app, body["recommendation_id"])
    dropped = {c["item_id"]: c["popular_tier"] for c in stored["candidates"]
               if c["status"] == "dropped_avoid"}
    assert dropped == {"loveactually": "recent", "casablanca": "all_time",
                       "pride": "catalog"}
    assert stored["excluded"]["dropped_avoid"] == 3


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_trace_feedback_and_tenant_isolation(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune"], "a")
    app.refresh()
    body = recommend(app, k=3)
    rid = body["recommendation_id"]
    first, second = ids(body)[:2]
    later = app.clock() + timedelta(minutes=5)
    app.send("u1",
             event("u1", "click", first, ts=later, event_id="fb1", recommendation_id=rid),
             event("u1", "purchase", first, ts=later + timedelta(minutes=1), event_id="fb2",
                   recommendation_id=rid),
             event("u1", "skip", "tacos", ts=later, event_id="fb3", recommendation_id=rid),
             event("u1", "view", second, ts=later, event_id="plain"))  # no recommendation id

    stored = trace(app, rid)
    assert stored["user_id"] == "u1" and stored["source"] == "profile"
    assert stored["parameters"]["k"] == 3 and stored["parameters"]["explain"] == "template"
    by_item = {i["item_id"]: i for i in stored["items"]}
    assert [(f["event_id"], f["type"]) for f in by_item[first]["feedback"]] == [
        ("fb1", "click"), ("fb2", "purchase")]
    assert by_item[second]["feedback"] == []
    assert [f["event_id"] for f in stored["other_feedback"]] == ["fb3"]
    # The trace holds what the response said, and what it was computed from.
    assert [i["explanation"] for i in stored["items"]] == [
        i["explanation"] for i in body["items"]]
    facet = stored["facets"][0]
    assert facet["label"] == "Science fiction films" and facet["evidence"] == ["a-alien", "a-dune"]
    for c in stored["candidates"]:
        assert set(c["similarities"]) == {facet["facet_id"]}
        assert c["item_id"] not in {"alien", "dune"}
    assert stored["excluded"]["consumed"] >= 2

    other = make_tenant(app.t.client, "globex")
    r = other.get(f"/v1/recommendations/{rid}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "recommendation_not_found"
    assert app.t.get("/v1/recommendations/rec_nope").status_code == 404
    assert app.t.get("/v1/recommendations/..%2Fetc").status_code in (404, 422)
    assert other.get("/v1/users/u1/recommendations").status_code == 404


def test_bad_requests(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")
    r = app.t.get("/v1/users/ghost/recommendations")
    assert r.status_code == 404 and r.json()["error"]["code"] == "user_not_found"
    for params, name in [({"k": 0}, "k"), ({"k": 101}, "k"), ({"explain": "poetry"}, "explain"),
                         ({"category": ""}, "category")]:
        r = app.t.get("/v1/users/u1/recommendations", params=params)
        assert r.status_code == 422, params
        assert name in {d["field"] for d in r.json()["error"]["details"]}
    assert recommend(app, k=100)["source"] == "popular"


def test_deleting_the_user_deletes_their_traces(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")
    app.refresh()
    app.watch("u2", ["dune"], "b")
    app.refresh("u2")
    gone = recommend(app, "u1")["recommendation_id"]
    kept = recommend(app, "u2")["recommendation_id"]
    assert app.t.delete("/v1/users/u1").status_code == 200
    assert app.t.get(f"/v1/recommendations/{gone}").status_code == 404
    assert trace(app, kept)["user_id"] == "u2"
    with app.t.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(RecommendationTrace)) == 1


# -- explanations written by the model ----------------------------------------------------


def answer(text: str, evidence: list[str]) -> str:
    return json.dumps({"explanation": text, "evidence": evidence})


def cooking_and_scifi(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune", "bread"], "a")
    app.refresh()


def test_a_grounded_llm_explanation_is_used_for_the_first_three_items(app: RecommendApp) -> None:
    cooking_and_scifi(app)

    def grounded(prompt: str) -> str:
        event_id, title = given_evidence(prompt)[0]
        return answer(f"You enjoyed {title}, so this should suit you too.", [event_id])

    app.model.explain = grounded
    body = recommend(app, k=5, explain="llm")
    sources = [i["explanation_source"] for i in body["items"]]
    assert sources == ["llm"] * 3 + ["template"] * 2
    assert len(app.model.explain_prompts) == 3
    for entry in body["items"][:3]:
        first = entry["because"]["evidence"][0]
        assert entry["explanation"] == (
            f"You enjoyed {first['title']}, so this should suit you too.")
    # The prompt carried the facet, its evidence and the item, and nothing else of the user's.
    prompt = app.model.explain_prompts[0]
    top = body["items"][0]
    assert top["title"] in prompt and top["because"]["label"] in prompt
    assert {e for e, _ in given_evidence(prompt)} == {
        e["event_id"] for e in top["because"]["evidence"]}
    stored = trace(app, body["recommendation_id"])
    llm = stored["items"][0]["llm"]
    assert llm["prompt_name"] == "explain_recommendation" and llm["prompt_version"] == "1"
    assert llm["cited"] == [top["because"]["evidence"][0]["event_id"]]
    assert stored["items"][3]["llm"] is None


@pytest.mark.parametrize("lie", ["unknown_event", "other_title", "broken_json", "server_down"])
def test_an_ungrounded_llm_explanation_falls_back_to_the_template(
        app: RecommendApp, lie: str) -> None:
    cooking_and_scifi(app)

    def misbehave(prompt: str) -> str:
        given = given_evidence(prompt)
        others = [t for t in ("Alien", "Dune", "Sourdough at Home")
                  if t not in {title for _, title in given}]
        if lie == "unknown_event":
            return answer(f"You liked {given[0][1]}.", [given[0][0], "ev_invented"])
        if lie == "other_title":  # cites correctly, but names an item it was not given
            return answer(f"You liked {others[0]} and {given[0][1]}.", [given[0][0]])
        if lie == "broken_json":
            return '{"explanation": "You liked'
        raise ConnectionError("connection refused")

    app.model.explain = misbehave
    body = recommend(app, k=3, explain="llm")
    template = recommend(app, k=3)
    # A dead server is asked once; a live one that answers badly, once per item.
    assert len(app.model.explain_prompts) == (1 if lie == "server_down" else 3)
    assert [i["explanation_source"] for i in body["items"]] == ["template_fallback"] * 3
    assert [i["explanation"] for i in body["items"]] == [
        i["explanation"] for i in template["items"]]
    problems = [i["explanation_problem"] for i in trace(app, body["recommendation_id"])["items"]]
    expected = {"unknown_event": "not given", "other_title": "mentions items",
                "broken_json": "JSON", "server_down": "ConnectionError"}[lie]
    assert all(expected in (p or "") for p in problems), problems


def test_llm_explanations_stop_when_their_time_budget_is_spent(
        app: RecommendApp, monkeypatch: pytest.MonkeyPatch) -> None:
    cooking_and_scifi(app)
    monkeypatch.setattr(recommend_service, "LLM_EXPLAIN_BUDGET_SECONDS", 0)
    app.model.explain = lambda prompt: answer(
        f"You enjoyed {given_evidence(prompt)[0][1]} very much.", [given_evidence(prompt)[0][0]])
    body = recommend(app, k=3, explain="llm")
    assert len(app.model.explain_prompts) == 1  # started within the budget, the rest not
    assert [i["explanation_source"] for i in body["items"]] == [
        "llm", "template_fallback", "template_fallback"]
    problems = [i["explanation_problem"] for i in trace(app, body["recommendation_id"])["items"]]
    assert problems[0] is None and all("budget" in (p or "") for p in problems[1:])


def test_model_hits_skip_the_thread_only_for_a_history_the_models_keep_an_answer_for() -> None:
    """The same hits either way; a thread only when the models must work them out."""
    import threading
    from datetime import UTC, datetime

    from service.recommend.candidates import UserHistory
    from service.training.contract import UserEvent

    threads: list[str] = []

    class Models:
        """Keeps each history's answer, as `TrainedModels` keeps the personal ones."""

        def __init__(self) -> None:
            self.kept: dict[tuple[str, ...], dict[str, Any]] = {}

        def candidates(self, history: list[UserEvent], n: int, exclude: set[str],
                       now: float) -> dict[str, dict[str, Any]]:
            threads.append(threading.current_thread().name)
            key = tuple(e.item_id for e in history)
            self.kept[key] = {"popular": {e.item_id: len(history) for e in history}}
            return self.kept[key]

        def candidates_if_kept(self, history: list[UserEvent], n: int, exclude: set[str],
                               now: float) -> dict[str, dict[str, Any]] | None:
            return self.kept.get(tuple(e.item_id for e in history))

    at = datetime(2026, 1, 1, tzinfo=UTC)
    one = UserHistory([UserEvent("a", 1.0, 1.0, "e1")], [], {"a"})
    two = UserHistory([*one.events, UserEvent("b", 2.0, 1.0, "e2")], [], {"a", "b"})
    models = Models()

    def hits(history: UserHistory) -> Any:
        return recommend_service._model_hits(models, history, None, at)()  # type: ignore[arg-type]

    assert hits(one) == hits(one) == {"popular": {"a": 1}}
    assert hits(two) == {"popular": {"a": 2, "b": 2}}
    # Worked out twice (one, then two), each time on the pool's thread.
    assert len(threads) == 2 and all(t.startswith("model-candidates") for t in threads)
