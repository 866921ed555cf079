"""Catalog reads on the recommendation path give the tags grouping and calibration use."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update

from service.catalog.models import Item
from service.catalog.service import index_pending_items, stored_tag_keys, tag_keys
from service.profiles.merge import DecayRules, decayed_strength
from service.profiles.models import ProfileFacetRow
from service.profiles.reads import to_facet
from service.recommend.candidates import (
    CATALOG_CACHE,
    CatalogRow,
    active_facets,
    catalog_rows,
    retrieve,
)
from service.tenants.service import tenant_by_name
from service.users.models import User
from service.vectors.store import Kind, VectorStore
from tests.utils.api import ApiTenant, event, item


@pytest.mark.parametrize(("tags", "category"), [
    (["Sci-Fi", "  space   opera ", "sci-fi", ""], "Film"),
    ([], "book"),
    (["cooking"], None),
    ([], None),
])
def test_stored_tags_give_the_same_keys_as_the_decoded_ones(tags: list[str],
                                                            category: str | None) -> None:
    assert stored_tag_keys(json.dumps(tags), category) == tag_keys(tags, category)


def test_a_row_without_stored_tags_keeps_its_category() -> None:
    assert stored_tag_keys(None, "Film") == ("category:film",)
    assert stored_tag_keys(json.dumps(["Sci-Fi", "space"]), "Film") == (
        "sci-fi", "space", "category:film")


# -- catalog rows kept in memory under the tenant's catalog token ----------------------

def _rows(client: TestClient, tenant_name: str, ids: list[str]) -> dict[str, CatalogRow]:
    """A request's read: its own session, the tenant row read first (as auth does)."""
    with client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        tenant = tenant_by_name(session, tenant_name)
        assert tenant is not None
        return catalog_rows(session, tenant.id, ids)


def _version(client: TestClient, tenant_name: str) -> str:
    with client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        tenant = tenant_by_name(session, tenant_name)
        assert tenant is not None
        return tenant.catalog_version


def test_kept_catalog_rows_follow_every_item_write(tenant: ApiTenant, other_tenant: ApiTenant,
                                                   client: TestClient) -> None:
    CATALOG_CACHE.clear()
    tenant.put("/v1/items", json={"items": [item("a", title="Alpha", tags=["x"]),
                                            item("b", title="Beta")]})
    other_tenant.put("/v1/items", json={"items": [item("a", title="Other alpha")]})
    first = _version(client, "acme")
    assert _rows(client, "acme", ["a", "b", "missing"])["a"].title == "Alpha"
    assert _rows(client, "globex", ["a"])["a"].title == "Other alpha"

    # Kept: a change that bypasses the catalog service is not seen (what proves the rows
    # come from memory); the same token, the same rows.
    with client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        session.execute(update(Item).where(Item.item_id == "b").values(title="Sneaky"))
        session.execute(update(Item).where(Item.item_id == "a", Item.title == "Other alpha")
                        .values(title="Other sneaky"))
        session.commit()
    assert _rows(client, "acme", ["b"])["b"].title == "Beta"

    # An unchanged upsert keeps the token; a changed item renews it, and every kept row
    # of that tenant is read again (b's direct edit shows now), the other tenant's kept.
    tenant.put("/v1/items", json={"items": [item("a", title="Alpha", tags=["x"])]})
    assert _version(client, "acme") == first
    tenant.put("/v1/items", json={"items": [item("a", title="Alpha 2", tags=["y"])]})
    assert _version(client, "acme") != first
    rows = _rows(client, "acme", ["a", "b", "missing"])
    assert (rows["a"].title, rows["a"].tags, rows["b"].title) == ("Alpha 2", ("y",), "Sneaky")
    assert "missing" not in rows
    # globex's kept rows outlive acme's token (its direct edit still unseen).
    assert _rows(client, "globex", ["a"])["a"].title == "Other alpha"

    # A new item is found once written, though an earlier read missed it.
    tenant.put("/v1/items", json={"items": [item("missing", title="Late")]})
    assert _rows(client, "acme", ["missing"])["missing"].title == "Late"


def test_indexing_renews_the_token_since_vector_versions_change(
        tenant: ApiTenant, client: TestClient) -> None:
    CATALOG_CACHE.clear()
    container = client.app.state.container  # type: ignore[attr-defined]
    with container.sessions() as session:
        owner = tenant_by_name(session, "acme")
        assert owner is not None
        session.execute(insert(Item).values(tenant_id=owner.id, item_id="raw", title="Raw",
                                            tags=[], content_hash="h", text_hash=None))
        session.commit()
        before = catalog_rows(session, owner.id, ["raw"])["raw"].version
        version = owner.catalog_version
        index_pending_items(session, owner.id, container.embedder, container.vectors)
        session.refresh(owner)
        assert owner.catalog_version != version
        assert before == "" and catalog_rows(session, owner.id, ["raw"])["raw"].version


# -- facet neighbours kept under the catalog token ---------------------------------------

def test_facet_neighbours_are_asked_once_until_the_catalog_changes(
        tenant: ApiTenant, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    container = client.app.state.container  # type: ignore[attr-defined]
    vectors: VectorStore = container.vectors
    tenant.put("/v1/items", json={"items": [
        item("jazz1", title="Bebop trumpet live in a smoky club"),
        item("jazz2", title="Big band swing and saxophone"),
        item("hike1", title="Alpine trail to the summit hut"),
        item("cook1", title="Sourdough bread and fermentation")]})
    asked: list[int] = []
    real = vectors.nearest

    def counting(tenant_id: int, kind: Kind, matrix: npt.NDArray[np.float32], n: int,
                 where: Mapping[str, Any] | None = None) -> list[list[tuple[str, float]]]:
        asked.append(len(matrix))
        return real(tenant_id, kind, matrix, n, where)

    monkeypatch.setattr(vectors, "nearest", counting)
    with container.sessions() as session:
        owner = tenant_by_name(session, "acme")
        assert owner is not None
        owner_id = owner.id
        query = np.asarray(container.embedder.embed(["jazz saxophone bebop"]), dtype=np.float32)

        def ask() -> list[str]:
            return retrieve(session, vectors, owner_id, query, [2], set(), None, 1).candidates

        first = ask()
        assert first[0].startswith("jazz") and asked == [1]
        assert ask() == first and asked == [1]  # the same question: not asked again
        # Another store (another app) never reads this one's answers.
        other = VectorStore(vectors.client, prefix="other-")
        monkeypatch.setattr(other, "nearest", counting)
        retrieve(session, other, owner.id, query, [2], set(), None, 1)
        assert asked == [1, 1]

    # A new item renews the token: asked again, and the new item can be found.
    tenant.put("/v1/items", json={"items": [item("jazz3", title="Saxophone bebop jazz")]})
    with container.sessions() as session:
        owner = tenant_by_name(session, "acme")
        assert owner is not None
        found = retrieve(session, vectors, owner.id, query, [2], set(), None, 1).candidates
        assert asked == [1, 1, 1] and "jazz3" in found


def test_a_users_evidence_is_read_once_per_catalog_and_never_outlives_the_user(
        tenant: ApiTenant, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.ingest.evidence import evidence_and_items
    from service.recommend import candidates
    from service.users.models import User

    container = client.app.state.container  # type: ignore[attr-defined]
    reads: list[int] = []
    real = evidence_and_items

    def counting(session: object, user: object, ids: set[str]) -> object:
        reads.append(len(ids))
        return real(session, user, ids)  # type: ignore[arg-type]

    monkeypatch.setattr(candidates, "evidence_and_items", counting)

    def evidence(ids: list[str]) -> dict[str, str | None]:
        with container.sessions() as session:
            user = session.scalars(select(User).where(User.user_id == "u1")).one()
            events, rows = candidates.evidence_with_items(session, user, ids)
            return {e: events[e].title for e in events} | {
                f"row:{i}": r.title for i, r in rows.items()}

    tenant.put("/v1/items", json={"items": [item("a", title="Alpha"), item("b", title="Beta")]})
    tenant.post("/v1/events", json={"events": [event("u1", item_id="a", event_id="e1"),
                                               event("u1", item_id="b", event_id="e2")]})
    first = evidence(["e1", "e2"])
    assert first == {"e1": "Alpha", "e2": "Beta", "row:a": "Alpha", "row:b": "Beta"}
    assert evidence(["e2", "e1"]) == first and reads == [2]  # kept: not read again
    assert evidence(["e1"]) == {"e1": "Alpha", "row:a": "Alpha"} and reads == [2, 1]
    # A catalog change (a new title) is read, not served from what was kept.
    tenant.put("/v1/items", json={"items": [item("a", title="Alpha 2")]})
    assert evidence(["e1", "e2"])["row:a"] == "Alpha 2" and reads == [2, 1, 2]
    # The user deleted and made again with the same event ids: their own events, read.
    assert tenant.delete("/v1/users/u1").status_code == 200
    tenant.post("/v1/events", json={"events": [event("u1", item_id="b", event_id="e1")]})
    assert evidence(["e1", "e2"]) == {"e1": "Beta", "row:b": "Beta"} and reads == [2, 1, 2, 2]


# -- the user's own events, read as the driver's SQL text ------------------------------

def test_the_history_read_as_sql_text_is_what_the_orm_reads(
        tenant: ApiTenant, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Newest `MAX_HISTORY` item events, oldest first, timestamps aware UTC; beyond them
    every item used is still consumed (the second read)."""
    from datetime import UTC, timedelta

    from service.ingest.models import Event
    from service.recommend import candidates
    from service.users.models import User
    from tests.utils.api import NOW

    monkeypatch.setattr(candidates, "MAX_HISTORY", 4)
    tenant.put("/v1/items", json={"items": [item(f"i{n}") for n in (*range(6), 9)]})
    answer = tenant.post("/v1/events", json={"events": [
        event("u1", "rating", item_id=f"i{n}", value=float(n % 6), event_id=f"e{n}",
              ts=NOW - timedelta(hours=n, microseconds=n)) for n in range(6)] + [
        event("u1", "search", item_id=None, text="space", event_id="s1"),
        # The same time as e1: the later insert is the newer one.
        event("u1", "like", item_id="i9", event_id="e9",
              ts=NOW - timedelta(hours=1, microseconds=1)),
    ]})
    assert answer.status_code == 200, answer.text
    container = client.app.state.container  # type: ignore[attr-defined]
    with container.sessions() as session:
        user = session.scalars(select(User).where(User.user_id == "u1")).one()
        history = candidates.user_history(session, user, 5.0)
        orm = session.execute(
            select(Event.event_id, Event.type, Event.ts, Event.item_id, Event.value)
            .where(Event.user_pk == user.id, Event.item_id.is_not(None))
            .order_by(Event.ts.desc(), Event.id.desc()).limit(4)).all()
    expected = [candidates.HistoryEvent(e, t, ts, str(i), v) for e, t, ts, i, v in reversed(orm)]
    assert [e.event_id for e in expected] == ["e2", "e1", "e9", "e0"]
    assert history.cited == expected
    assert all(e.ts.tzinfo is UTC for e in history.cited)
    assert [e.ts for e in history.events] == [e.ts.timestamp() for e in expected]
    assert history.consumed == {f"i{n}" for n in range(6)} | {"i9"}


def test_a_users_history_is_read_again_only_after_their_events_change(
        tenant: ApiTenant, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.recommend import candidates
    from service.users.models import User

    container = client.app.state.container  # type: ignore[attr-defined]
    reads: list[int] = []
    real = candidates._read_history

    def counting(session: object, user: object, rating_max: float) -> object:
        reads.append(1)
        return real(session, user, rating_max)  # type: ignore[arg-type]

    monkeypatch.setattr(candidates, "_read_history", counting)

    def history() -> list[str]:
        with container.sessions() as session:
            user = session.scalars(select(User).where(User.user_id == "u1")).one()
            return [e.event_id for e in candidates.user_history(session, user, 5.0).cited]

    tenant.put("/v1/items", json={"items": [item("a"), item("b")]})
    tenant.post("/v1/events", json={"events": [event("u1", item_id="a", event_id="e1")]})
    assert history() == ["e1"] and history() == ["e1"] and len(reads) == 1
    # Any new event is read, even one without an item (the stamp counts every event).
    tenant.post("/v1/events", json={"events": [event("u1", item_id="b", event_id="e2")]})
    assert history() == ["e1", "e2"] and len(reads) == 2
    tenant.post("/v1/events", json={"events": [
        event("u1", "search", item_id=None, text="jazz", event_id="s1")]})
    assert history() == ["e1", "e2"] and len(reads) == 3
    # The user deleted and made again with as many events: their own, read.
    assert tenant.delete("/v1/users/u1").status_code == 200
    tenant.post("/v1/events", json={"events": [
        event("u1", item_id="b", event_id="x1"), event("u1", item_id="a", event_id="x2"),
        event("u1", "search", item_id=None, text="jazz", event_id="x3")]})
    assert history() == ["x1", "x2"] and len(reads) == 4


def test_facet_centroids_are_kept_under_the_catalog_token_only() -> None:
    from service.recommend.candidates import evidence_centroid, forget_kept
    from service.training.features import unit_mean

    forget_kept()
    first = {"a": np.array([1.0, 0.0], dtype=np.float32),
             "b": np.array([0.0, 1.0], dtype=np.float32)}
    got = evidence_centroid(1, "t1", ("a", "b"), first)
    expected = unit_mean([first["a"], first["b"]])
    assert expected is not None
    assert got is not None and got.tolist() == expected.tolist()
    assert evidence_centroid(1, "t1", (), first) is None
    # Under a new token the items' vectors may have changed: worked out again.
    second = {"a": np.array([1.0, 0.0], dtype=np.float32),
              "b": np.array([1.0, 0.0], dtype=np.float32)}
    assert evidence_centroid(1, "t1", ("a", "b"), second) is got  # the same token: kept
    renewed = evidence_centroid(1, "t2", ("a", "b"), second)
    assert renewed is not None and renewed.tolist() == [1.0, 0.0]
    untokened = evidence_centroid(2, None, ("a", "b"), second)
    assert untokened is not None and untokened.tolist() == [1.0, 0.0]


def test_item_vectors_are_read_once_per_catalog_token(
        tenant: ApiTenant, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under one catalog token a vector read once is not asked of the store again; a new
    token (an item written and indexed) reads the changed vector; without a token every
    call asks the store."""
    from service.recommend.candidates import forget_kept, item_vectors

    container = client.app.state.container  # type: ignore[attr-defined]
    vectors = container.vectors
    forget_kept()
    tenant.put("/v1/items", json={"items": [
        item("jazz1", title="Bebop trumpet live in a smoky club"),
        item("hike1", title="Alpine trail to the summit hut")]})
    asked: list[list[str]] = []
    real = vectors.vectors

    def counting(tenant_id: int, kind: str, versions: dict[str, str]) -> Any:
        asked.append(sorted(versions))
        return real(tenant_id, kind, versions)

    monkeypatch.setattr(vectors, "vectors", counting)

    def read(ids: list[str]) -> tuple[str, dict[str, np.ndarray]]:
        with container.sessions() as session:
            owner = tenant_by_name(session, "acme")
            assert owner is not None
            rows = _rows(client, "acme", ids)
            token = _version(client, "acme")
            return token, item_vectors(vectors, owner.id,
                                       {i: rows[i].version for i in ids}, token)

    token, first = read(["jazz1"])
    first_version = _rows(client, "acme", ["jazz1"])["jazz1"].version
    assert list(first) == ["jazz1"] and asked == [["jazz1"]]
    again_token, again = read(["jazz1", "hike1"])
    assert again_token == token and asked == [["jazz1"], ["hike1"]]  # only the new one
    assert again["jazz1"] is first["jazz1"]
    assert read(["hike1", "jazz1"])[1].keys() == {"jazz1", "hike1"} and len(asked) == 2
    # An id the store does not hold is asked about once under the token.
    with container.sessions() as session:
        owner = tenant_by_name(session, "acme")
        assert owner is not None
        for _ in range(2):
            assert item_vectors(vectors, owner.id, {"ghost": "h0", "jazz1": first_version},
                                token).keys() == {"jazz1"}
    assert asked[2:] == [["ghost"]]
    # The item rewritten and indexed again: a new token, and the new vector.
    tenant.put("/v1/items", json={"items": [item("jazz1", title="Alpine hut trail")]})
    new_token, changed = read(["jazz1"])
    assert new_token != token and asked[-1] == ["jazz1"]
    assert float(changed["jazz1"] @ again["hike1"]) > float(first["jazz1"] @ again["hike1"])
    # No token: the store is asked every time.
    with container.sessions() as session:
        owner = tenant_by_name(session, "acme")
        assert owner is not None
        item_vectors(vectors, owner.id, {"hike1": _rows(client, "acme", ["hike1"])["hike1"]
                                         .version})
    assert asked[-1] == ["hike1"]


# -- the facets a list reads -----------------------------------------------------------

def test_active_facets_are_the_stored_rows_decayed_as_the_merge_decays_them(
        tenant: ApiTenant, client: TestClient) -> None:
    """Read as plain columns, each facet is what `to_facet` and `decayed_strength` make of
    its row: archived, suppressed and decayed-out facets left out (pinned ones kept),
    another user's never seen, strongest first."""
    tenant.put("/v1/items", json={"items": [item("i1")]})
    answer = tenant.post("/v1/events", json={"events": [event("u1"), event("u2")]})
    assert answer.status_code == 200, answer.text
    at = datetime(2026, 6, 1, tzinfo=UTC)
    rules = DecayRules()
    vector = np.arange(4, dtype="<f4") / 4
    cases = [  # (facet id, user, strength, days ago, horizon, polarity, pinned, suppressed,
        #         archived)
        ("strong-short", "u1", 0.9, 2.0, "short", "like", False, False, False),
        ("weak-long", "u1", 0.3, 30.0, "long", "like", False, False, False),
        ("avoid", "u1", 0.6, 1.0, "short", "avoid", False, False, False),
        ("future", "u1", 0.5, -3.0, "short", "like", False, False, False),  # never rises
        ("decayed-out", "u1", 0.4, 40.0, "short", "like", False, False, False),
        ("pinned-old", "u1", 0.4, 400.0, "short", "like", True, False, False),
        ("suppressed", "u1", 0.9, 1.0, "short", "like", False, True, False),
        ("archived", "u1", 0.9, 1.0, "long", "like", False, False, True),
        ("other-user", "u2", 0.9, 1.0, "long", "like", False, False, False),
    ]
    with client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        users = {u.user_id: u for u in session.scalars(select(User))}
        for (facet_id, user_id, strength, days, horizon, polarity, pinned, suppressed,
             archived) in cases:
            when = at - timedelta(days=days)
            session.add(ProfileFacetRow(
                tenant_id=users[user_id].tenant_id, user_pk=users[user_id].id,
                facet_id=facet_id, label=f"Label {facet_id}", description=f"About {facet_id}",
                strength=strength, strength_at=when, horizon=horizon, polarity=polarity,
                evidence=[f"{facet_id}-e1", f"{facet_id}-e2"],
                embedding=(vector + len(facet_id)).tobytes(), first_seen=when,
                last_reinforced=when, pinned=pinned, suppressed=suppressed,
                archived=archived))
        session.commit()
        got = active_facets(session, users["u1"], at, rules)
        rows = {r.facet_id: r for r in session.scalars(select(ProfileFacetRow))}

    assert [f.facet_id for f in got] == [
        "strong-short", "avoid", "future", "pinned-old", "weak-long"]
    for f in got:
        row = rows[f.facet_id]
        stored = to_facet(row, with_embedding=False)
        assert f.strength == decayed_strength(stored, at, rules)
        assert (f.label, f.description, f.polarity, f.horizon, f.pinned) == (
            row.label, row.description, row.polarity, row.horizon, row.pinned)
        assert (f.stored_strength, f.strength_at, f.evidence) == (
            row.strength, row.strength_at, tuple(row.evidence))
        assert f.vector.dtype == np.dtype("<f4")
        assert f.vector.tolist() == np.frombuffer(row.embedding, dtype="<f4").tolist()
    assert got[2].strength == 0.5  # a strength dated after the request does not rise
    assert got[3].strength == 0.4  # pinned: kept at its stored strength
    assert decayed_strength(to_facet(rows["decayed-out"], with_embedding=False), at,
                            rules) < rules.archive_below
