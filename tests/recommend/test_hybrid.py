"""Recommendations with the tenant's trained models, over HTTP: hashed-words vectors
(MiniLM in the tests marked slow), real Chroma, models trained on the tenant's own events
(a crowd walking each topic in order), the learned ranker, and reasons that cite the
user's own events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from service.core.config import Settings
from service.recommend.candidates import catalog_rows
from service.recommend.explain import REASON_TEXT
from service.recommend.lists import RecommendationRequest
from service.recommend.ranking import LazyDiscount, RankingParams
from service.recommend.reasons import RELATED_MIN
from service.recommend.service import NO_MODELS
from service.recommend.service import recommend as recommend_list
from service.training.contract import FacetSignal
from service.training.features import (
    COLUMN,
    FACET_CF_COLUMNS,
    FEATURE_NAMES,
    FEATURE_VERSION,
    facet_cooccurrence,
)
from service.training.store import ArtifactStore, models_root
from service.users.models import User
from service.vectors.embeddings import Embedder
from tests.utils.api import event
from tests.utils.profiles import CATALOG, ProfileApp
from tests.utils.recommend import (
    CATEGORIES,
    MORE,
    ROMANCE,
    SCIFI,
    RecommendApp,
    given_evidence,
    make_recommend_app,
    send_crowd,
    train_models,
    write_facets,
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


def own_events(app: ProfileApp, user: str = "u1") -> dict[str, dict[str, Any]]:
    r = app.t.get(f"/v1/users/{user}/events", params={"limit": 200})
    assert r.status_code == 200, r.text
    return {e["event_id"]: e for e in r.json()["events"]}


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def sci_fi_fan(app: ProfileApp) -> None:
    """u1 rated the first three films of the sci-fi path, the last one 5/5."""
    now = app.clock()
    app.send("u1", *[event("u1", "rating", i, value=v, event_id=f"u1-{i}",
                           ts=now - timedelta(hours=3 - n))
                     for n, (i, v) in enumerate([("alien", 4.0), ("dune", 4.5),
                                                 ("solaris", 5.0)])])


def sci_fi_then_romance_with_models(app: ProfileApp) -> None:
    """u1 rated four sci-fi films then two romances 5/5; the crowd's models trained."""
    now = app.clock()
    app.send("u1", *[event("u1", "rating", i, value=5.0, event_id=f"u1-{i}",
                           ts=now - timedelta(hours=6 - n))
                     for n, i in enumerate(["alien", "dune", "solaris", "interstellar",
                                            "notebook", "casablanca"])])
    send_crowd(app.t, app.clock)
    train_models(app.t, app.settings)


@pytest.mark.slow  # trains the LightGBM ranker: tens of seconds on busy cores
def test_a_trained_tenant_gets_a_hybrid_list_whose_reasons_cite_the_users_own_events(
        app: ProfileApp) -> None:
    send_crowd(app.t, app.clock)
    sci_fi_fan(app)
    meta = train_models(app.t, app.settings)
    assert meta.ranker, meta.notes

    body = recommend(app, k=5)
    assert body["source"] == "hybrid" and len(body["items"]) == 5
    assert not {"alien", "dune", "solaris"} & set(ids(body))  # consumed
    # The crowd's next films after Solaris lead the list (MMR may spread the rest).
    assert ids(body)[0] in SCIFI, ids(body)
    mine = own_events(app)
    kinds = set()
    for entry in body["items"]:
        because = entry["because"]
        if because is None:
            continue
        kinds.add(because["kind"])
        assert because["evidence"], entry
        for e in because["evidence"]:
            assert e["event_id"] in mine  # only u1's own events, never the crowd's
            assert (e["type"], e["item_id"]) == (mine[e["event_id"]]["type"],
                                                 mine[e["event_id"]]["item_id"])
    assert kinds and kinds <= {"co_occurrence", "transition", "sequence", "content"}
    top = body["items"][0]
    assert top["because"] is not None
    cited = top["because"]["evidence"][0]
    assert cited["title"] in top["explanation"] and top["explanation"].startswith("Because ")
    if top["because"]["kind"] == "co_occurrence" and cited["event_id"] == "u1-solaris":
        assert top["explanation"] == (
            "Because you rated Solaris 5/5, and people who loved it loved this.")

    stored = trace(app, body["recommendation_id"])
    p = stored["parameters"]
    assert stored["source"] == "hybrid" and p["scoring"] == "ranker"
    assert p["models"]["version"] == meta.version
    assert p["models"]["ranker"] == f"lgbm-lambdarank/{FEATURE_VERSION}"
    assert p["models"]["feature_version"] == FEATURE_VERSION
    assert p["feature_names"] == list(FEATURE_NAMES) and p["notes"] == []
    returned = [c for c in stored["candidates"] if c["status"] == "returned"]
    assert [c["item_id"] for c in sorted(returned, key=lambda c: c["mmr_rank"])] == ids(body)
    for c in stored["candidates"]:
        assert c["sources"] and len(c["features"]) == len(FEATURE_NAMES)
        assert c["item_id"] not in {"alien", "dune", "solaris"}
        for hit in c["sources"].values():
            assert hit["via"] is None or hit["via"] in mine
    for c, item in zip(sorted(returned, key=lambda c: c["mmr_rank"]), body["items"],
                       strict=True):
        assert c["score"] == pytest.approx(item["score"], abs=1e-5)
        assert c["reason"] == (item["because"] or {}).get("kind")
    best = sorted(stored["candidates"], key=lambda c: -c["score"])[:2]
    assert {c["item_id"] for c in best} <= SCIFI
    by_item = {c["item_id"]: c for c in stored["candidates"]}
    assert "cooccurrence" in by_item[ids(body)[0]]["sources"] or (
        "transition" in by_item[ids(body)[0]]["sources"])


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_avoid_facets_still_drop_items_and_the_category_filter_holds(app: ProfileApp) -> None:
    send_crowd(app.t, app.clock)
    sci_fi_fan(app)
    app.send("u1", event("u1", "rating", "notebook", value=1.0, event_id="u1-notebook",
                         ts=app.clock() - timedelta(hours=5)))
    train_models(app.t, app.settings)
    write_facets(app.t, "u1", {
        "Science fiction films": ("Watches and rates space and sci-fi movies.", "like",
                                  ["u1-alien", "u1-dune", "u1-solaris"]),
        "Romance films": ("Rates romantic dramas low.", "avoid", ["u1-notebook"]),
    }, app.clock())

    body = recommend(app, k=20)
    assert body["source"] == "hybrid"
    assert not ROMANCE & set(ids(body))
    stored = trace(app, body["recommendation_id"])
    dropped = {c["item_id"] for c in stored["candidates"] if c["status"] == "dropped_avoid"}
    assert {"casablanca", "loveactually"} <= dropped
    assert stored["excluded"]["dropped_avoid"] == len(dropped)
    romance = next(f for f in stored["facets"] if f["polarity"] == "avoid")
    for c in stored["candidates"]:
        if c["item_id"] in dropped:
            assert c["similarities"][romance["facet_id"]] >= 0.5
    # Facet reasons still come with their evidence, every id u1's own, and name the
    # facet only for items that carry its tags (here: sci-fi).
    mine = own_events(app)
    tags = {i["item_id"]: set(i.get("tags", [])) for i in CATALOG + MORE}
    for entry in body["items"]:
        if entry["because"]:
            assert {e["event_id"] for e in entry["because"]["evidence"]} <= set(mine)
            if entry["because"]["kind"] == "facet":
                assert "sci-fi" in tags[entry["item_id"]], entry
    # The list was calibrated to the like-facet's tags (its evidence: three sci-fi films).
    p = stored["parameters"]
    assert p["calibration"] == app.settings.recommend_calibration > 0
    assert p["calibration_target"] == {"sci-fi": 1.0}

    books = recommend(app, k=10, category="book")
    assert books["items"] and all(CATEGORIES[i] == "book" for i in ids(books))
    assert {"foundation", "hyperion"} <= set(ids(books))
    assert trace(app, books["recommendation_id"])["excluded"]["category"] > 0
    assert recommend(app, k=10, category="no-such-category")["items"] == []


def test_without_trained_models_the_list_falls_back_and_the_trace_says_so(
        app: ProfileApp) -> None:
    send_crowd(app.t, app.clock)
    sci_fi_fan(app)
    popular = recommend(app, k=3)
    assert popular["source"] == "popular"
    stored = trace(app, popular["recommendation_id"])["parameters"]
    assert stored["models"] is None and stored["notes"] == [NO_MODELS]
    assert stored["scoring"] == "popular"

    write_facets(app.t, "u1", {
        "Science fiction films": ("Watches and rates space and sci-fi movies.", "like",
                                  ["u1-alien", "u1-dune"])}, app.clock())
    body = recommend(app, k=3)
    assert body["source"] == "profile"
    assert all(i["because"]["kind"] == "facet" for i in body["items"])
    p = trace(app, body["recommendation_id"])["parameters"]
    assert p["models"] is None and p["notes"] == [NO_MODELS] and p["scoring"] == "facets"


def test_a_ranker_less_artifact_uses_the_fixed_blend(app: ProfileApp) -> None:
    send_crowd(app.t, app.clock)
    sci_fi_fan(app)
    meta = train_models(app.t, app.settings, ranker=False)
    body = recommend(app, k=4)
    assert body["source"] == "hybrid" and set(ids(body)[:2]) <= SCIFI
    p = trace(app, body["recommendation_id"])["parameters"]
    assert p["scoring"] == "blend" and p["models"]["ranker"] is None
    assert p["models"]["version"] == meta.version and p["blend_weights"]["cooccurrence"] == 1.0


    # With a profile, each candidate's co-occurrence columns are its mean neighbour score
    # from each like-facet's evidence items (`facet_cooccurrence`), from the tenant's models.
    write_facets(app.t, "u1", {
        "Science fiction films": ("Watches and rates space and sci-fi movies.", "like",
                                  ["u1-alien", "u1-dune"])}, app.clock())
    stored = trace(app, recommend(app, k=4)["recommendation_id"])
    models = ArtifactStore(models_root(app.settings)).load(meta.tenant_id)
    assert models is not None
    candidates = [c["item_id"] for c in stored["candidates"]]
    expected = facet_cooccurrence(
        [FacetSignal(1.0, False, False, np.zeros(1, np.float32), items=("alien", "dune"))],
        candidates, models.cooccurrence_means)
    got = np.array([[c["features"][COLUMN[n]] for n in FACET_CF_COLUMNS]
                    for c in stored["candidates"]])
    assert np.allclose(got, expected, atol=1e-6) and got[:, 2].max() > 0


def test_the_mmr_setting_reaches_the_list_and_its_trace(
        app: ProfileApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """recommend_mmr_lambda at 1 leaves the list in the blend's order (calibration and the
    unexplained discount off: nothing but relevance); at 0 only redundancy counts, so the
    list changes. Each trace records the value its list was made with."""
    send_crowd(app.t, app.clock)
    sci_fi_fan(app)
    train_models(app.t, app.settings, ranker=False)
    profiles = app.t.client.app.state.container.profiles  # type: ignore[attr-defined]
    lists = {}
    for lam in (1.0, 0.0):
        monkeypatch.setattr(profiles, "settings", app.settings.model_copy(update={
            "recommend_mmr_lambda": lam, "recommend_calibration": 0.0,
            "recommend_unexplained_keep": 1.0}))
        body = recommend(app, k=4)
        stored = trace(app, body["recommendation_id"])
        assert stored["parameters"]["mmr_lambda"] == lam
        if lam == 1.0:
            by_score = [c["item_id"] for c in stored["candidates"]
                        if c["status"] in ("returned", "not_selected")]
            assert ids(body) == by_score[:4], (ids(body), by_score)
        lists[lam] = ids(body)
    assert lists[1.0] != lists[0.0]


@pytest.mark.slow  # trains the LightGBM ranker: tens of seconds on busy cores
def test_every_contributor_a_model_reason_cites_is_named_by_its_title(
        app: ProfileApp) -> None:
    """Four sci-fi films rated, then two romances: the sci-fi items' co-occurrence scores
    sum over the four films, and a reason cites those that gave a substantial share,
    not only the largest or the newest."""
    sci_fi_then_romance_with_models(app)
    body = recommend(app, k=8)
    cited = [(entry["because"]["kind"], e["item_id"], e["title"]) for entry in body["items"]
             if entry["because"] and entry["because"]["kind"] != "facet"
             for e in entry["because"]["evidence"]]
    # The scenario holds: some model reason cites more than one contributor.
    assert any(len(entry["because"]["evidence"]) > 1 for entry in body["items"]
               if entry["because"] and entry["because"]["kind"] in ("co_occurrence",
                                                                     "transition"))
    assert all(title for _, _, title in cited), cited


@pytest.mark.slow  # trains the LightGBM ranker: tens of seconds on busy cores
def test_llm_explanations_read_the_same_event_based_reasons(app: RecommendApp) -> None:
    send_crowd(app.t, app.clock)
    sci_fi_fan(app)
    train_models(app.t, app.settings)

    def grounded(prompt: str) -> str:
        event_id, title = given_evidence(prompt)[0]
        return json.dumps({"explanation": f"You enjoyed {title}, so this should suit you.",
                           "evidence": [event_id]})

    app.model.explain = grounded
    body = recommend(app, k=3, explain="llm")
    explained = [i for i in body["items"] if i["because"]]
    assert explained and len(app.model.explain_prompts) == len(explained)
    for entry, prompt in zip(explained, app.model.explain_prompts, strict=True):
        assert entry["explanation_source"] == "llm"
        assert [e for e, _ in given_evidence(prompt)] == [
            e["event_id"] for e in entry["because"]["evidence"]]
        if entry["because"]["kind"] != "facet":
            assert REASON_TEXT[entry["because"]["kind"]][1] in prompt


def _list_with(app: ProfileApp, keep: float, k: int) -> list[tuple[str, bool | None]]:
    """u1's list with this discount, each item with whether its reason's lead citation
    reads as related to it (None: no reason), judged from the stored item vectors."""
    container = app.t.client.app.state.container  # type: ignore[attr-defined]
    with container.sessions() as session:
        user = session.scalar(select(User).where(User.user_id == "u1"))
        assert user is not None
        out = recommend_list(session, user, container.profiles, RecommendationRequest(k=k),
                             RankingParams(unexplained_keep=keep))
        assert out.source == "hybrid"
        ids_ = {i.item_id for i in out.items} | {
            e.item_id for i in out.items if i.because for e in i.because.evidence
            if e.item_id}
        rows = catalog_rows(session, user.tenant_id, ids_)
        found = container.vectors.vectors(user.tenant_id, "items",
                                          {i: r.version for i, r in rows.items()})
    listed: list[tuple[str, bool | None]] = []
    for entry in out.items:
        lead = (entry.because.evidence[0].item_id if entry.because and entry.because.evidence
                else None)
        listed.append((entry.item_id, None if lead is None else bool(
            float(found[lead] @ found[entry.item_id]) >= RELATED_MIN)))
    return listed


@pytest.mark.slow  # MiniLM: whether a cited item reads as related needs its sense of meaning
def test_an_item_the_list_cannot_explain_gives_way_to_one_it_can(app: ProfileApp) -> None:
    """The same user, models and candidates, with unexplained items discounted hard or
    not at all: the discount changes the list, and whatever it pushes out is an item
    whose reason the user could not follow (its lead citation unrelated, or none)."""
    sci_fi_then_romance_with_models(app)
    changed = False
    for k in (2, 3, 4):
        plain = dict(_list_with(app, 1.0, k))
        explained = dict(_list_with(app, 0.01, k))
        assert _list_with(app, 1.0, k) == list(plain.items())  # the same inputs, same list
        pushed_out = set(plain) - set(explained)
        assert all(not plain[i] for i in pushed_out), (plain, explained)
        changed |= bool(pushed_out)
    assert changed  # the scenario exercises the discount
    # Each candidate records whether its reason reads as related; for the returned ones,
    # that agrees with the lead citation the client was shown. MMR judges only the
    # candidates it needs: the shortest list whose judged ones hold both kinds is read.
    for k in range(3, 9):
        body = recommend(app, k=k)
        stored = trace(app, body["recommendation_id"])
        judged = [c["explained"] for c in stored["candidates"] if c["explained"] is not None]
        if True in judged and False in judged:
            break
    assert True in judged and False in judged, judged  # the pool holds both kinds
    assert stored["parameters"]["unexplained_keep"] == app.settings.recommend_unexplained_keep
    flags = {c["item_id"]: c["explained"] for c in stored["candidates"]
             if c["status"] == "returned"}
    assert set(flags) == {i["item_id"] for i in body["items"]}
    container = app.t.client.app.state.container  # type: ignore[attr-defined]
    with container.sessions() as session:
        user = session.scalar(select(User).where(User.user_id == "u1"))
        assert user is not None
        leads = {i["item_id"]: i["because"]["evidence"][0]["item_id"] for i in body["items"]
                 if i["because"]}
        rows = catalog_rows(session, user.tenant_id, {*flags, *leads.values()})
        found = container.vectors.vectors(user.tenant_id, "items",
                                          {i: r.version for i, r in rows.items()})
    for item_id, flag in flags.items():
        lead = leads.get(item_id)
        assert flag is (lead is not None
                        and float(found[lead] @ found[item_id]) >= RELATED_MIN), item_id


class _EveryReason(LazyDiscount):
    """Every candidate's readability asked up front, as before reasons were lazy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for i in range(len(self.values)):
            self.settle(i)


@pytest.mark.slow  # MiniLM: whether a cited item reads as related needs its sense of meaning
def test_reasons_asked_lazily_give_the_list_every_reason_gives(
        app: ProfileApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Items, order, scores, reasons and sentences are the same whether MMR asks for the
    reasons it needs or every candidate's reason is found first."""
    from service.recommend import hybrid

    sci_fi_then_romance_with_models(app)
    container = app.t.client.app.state.container  # type: ignore[attr-defined]

    def listed(keep: float, k: int) -> list[dict[str, Any]]:
        with container.sessions() as session:
            user = session.scalar(select(User).where(User.user_id == "u1"))
            assert user is not None
            out = recommend_list(session, user, container.profiles,
                                 RecommendationRequest(k=k), RankingParams(unexplained_keep=keep))
        return [i.model_dump() for i in out.items]

    cases = [(keep, k) for keep in (0.01, 0.7) for k in (2, 3, 4, 10)]
    lazy = [listed(keep, k) for keep, k in cases]
    monkeypatch.setattr(hybrid, "LazyDiscount", _EveryReason)
    assert [listed(keep, k) for keep, k in cases] == lazy
