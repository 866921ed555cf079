"""Profile memory over HTTP: real Chroma in a temp folder, a summarizer fake that reads
the prompt, and a clock the tests move forward by days. Embeddings are hashed words, or
MiniLM in the tests marked slow, whose labels and merges need its sense of meaning."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import chromadb
import numpy as np
import pytest
from sqlalchemy import func, select

from service.core.config import Settings
from service.ingest.models import Event
from service.profiles.drafting import facet_text
from service.profiles.models import Profile, ProfileFacetRow, ProfileVersion
from service.profiles.reads import unpack
from service.summaries.models import SummaryRun
from service.vectors.embeddings import Embedder
from tests.utils.api import event, item, make_tenant
from tests.utils.profiles import (
    CATALOG,
    ProfileApp,
    born,
    make_profile_app,
    strengths,
)


def stored_vector(app: ProfileApp, facet_id: str) -> tuple[float, ...]:
    """A facet's vector as its row keeps it (written in the version's transaction)."""
    with app.t.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        row = session.scalars(select(ProfileFacetRow)
                              .where(ProfileFacetRow.facet_id == facet_id)).one()
        return unpack(row.embedding)


def facet_collections(app: ProfileApp) -> set[str]:
    """Chroma collections of facets: older versions wrote one per tenant, this one none."""
    vectors = app.t.client.app.state.container.vectors  # type: ignore[attr-defined]
    return {c.name for c in vectors.client.list_collections()
            if c.name.startswith(vectors.prefix) and c.name.endswith("-facets")}


def write_legacy_facets(app: ProfileApp, tenant_id: int, entries: dict[str, str]) -> None:
    """Facet vectors as older versions kept them in Chroma: facet id -> user id."""
    vectors = app.t.client.app.state.container.vectors  # type: ignore[attr-defined]
    embedder = app.t.client.app.state.container.embedder  # type: ignore[attr-defined]
    ids = list(entries)
    vectors.upsert(tenant_id, "facets", ids, embedder.embed(ids),
                   [{"user_id": entries[i], "polarity": "like"} for i in ids])


def nearest_items(app: ProfileApp, tenant_id: int, vector: Sequence[float], n: int) -> list[str]:
    vectors = app.t.client.app.state.container.vectors  # type: ignore[attr-defined]
    (found,) = vectors.nearest(tenant_id, "items", np.asarray([vector], dtype=np.float32), n)
    return [item_id for item_id, _ in found]


class VectorStoreDown:
    """A Chroma client whose every call fails as an unreachable server's does."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("vector store unreachable")
        return fail


@pytest.fixture
def app(settings: Settings, embedder: Embedder) -> Iterator[ProfileApp]:
    yield from make_profile_app(settings, embedder)


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_a_topic_shift_fades_the_old_interest_and_raises_the_new(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune", "solaris"], "week1")
    first = app.refresh()
    assert first["version"] == 1 and first["stale"] is False
    assert list(strengths(first)) == ["Science fiction films"]
    scifi = first["facets"][0]
    assert scifi["strength"] == pytest.approx(born(3))
    assert [e["event_id"] for e in scifi["evidence"]] == [
        "week1-alien", "week1-dune", "week1-solaris"]
    assert scifi["evidence"][0]["title"] == "Alien"

    # Two weeks later the user cooks. Only the new events are grouped: old evidence
    # cannot reinforce anything.
    app.clock.advance(days=14)
    app.watch("u1", ["bread", "pasta"], "week3")
    second = strengths(app.refresh())
    # Two half-lives, then passed over as cooking was born: it loses the share cooking
    # gained, born(2) = eta * n.
    assert second["Science fiction films"] == pytest.approx(born(3) / 4 * (1 - born(2)),
                                                            rel=1e-3)
    assert second["Home cooking"] == pytest.approx(born(2))

    app.clock.advance(days=7)
    app.watch("u1", ["curry"], "week4")
    third = strengths(app.refresh())
    assert born(3) / 8 < 0.05 and "Science fiction films" not in third  # faded: archived
    # Reinforced: s(t) + (1 - s(t)) * eta * n with s(t) = born(2) / 2.
    decayed = born(2) / 2
    assert third["Home cooking"] == pytest.approx(decayed + (1 - decayed) * born(1), rel=1e-3)
    assert list(third)[0] == "Home cooking"

    # GET decays to the request time; the stored version does not change.
    app.clock.advance(days=7)
    later = strengths(app.profile())
    assert later["Home cooking"] == pytest.approx(third["Home cooking"] / 2, rel=1e-3)

    history = app.t.get("/v1/users/u1/profile/history").json()
    assert [v["version"] for v in history["versions"]] == [3, 2, 1]
    timeline = {
        label: [next((f["strength"] for f in v["facets"] if f["label"] == label), 0.0)
                for v in reversed(history["versions"])]
        for label in ("Science fiction films", "Home cooking")
    }
    assert timeline["Science fiction films"] == sorted(timeline["Science fiction films"],
                                                       reverse=True)
    assert timeline["Home cooking"] == sorted(timeline["Home cooking"])
    newest = history["versions"][0]
    assert newest["model"] and newest["prompt_name"] == "name_interest_group"
    assert newest["last_event_id"] == "week4-curry" and newest["summary_run_id"]
    assert newest["narrative"] == "Interests: Home cooking."
    # One naming call per group and one narrative per refresh, nothing else.
    assert app.model.named == ["name_interest_group", "narrate_profile"] * 3


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_a_facets_vector_is_stored_with_its_profile_version(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune"], "a")
    facet = app.refresh()["facets"][0]
    text = facet_text("Science fiction films", "Watches and rates space and sci-fi movies.",
                      ["sci-fi"])
    assert text == ("Science fiction films. Watches and rates space and sci-fi movies. "
                    "Topics: sci-fi")  # label, description and tags: no title, no year
    stored = stored_vector(app, facet["facet_id"])
    embedder = app.t.client.app.state.container.embedder  # type: ignore[attr-defined]
    expected = embedder.embed([text])[0]
    assert list(stored) == pytest.approx(expected, abs=1e-5)
    # And the items: a sci-fi facet finds sci-fi films first.
    assert set(nearest_items(app, 1, stored, 3)[:2]) <= {"alien", "dune", "solaris"}
    # Recommendations read facet vectors from SQL: no facet collection in Chroma.
    assert facet_collections(app) == set()


def test_avoid_facets_stay_apart_from_likes(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")
    app.send("u1", event("u1", "rating", "notebook", value=1, ts=app.clock(),
                         event_id="no-romance"))
    facets = {f["label"]: f for f in app.refresh()["facets"]}
    # Polarity comes from the events, never from the model.
    assert facets["Romance films"]["polarity"] == "avoid"
    assert [e["event_id"] for e in facets["Romance films"]["evidence"]] == ["no-romance"]
    likes = [f for f in facets.values() if f["polarity"] == "like"]
    assert [e["event_id"] for f in likes for e in f["evidence"]] == ["a-alien"]


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_edits_hold_across_later_refreshes(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "bread"], "a")
    facets = {f["label"]: f["facet_id"] for f in app.refresh()["facets"]}
    scifi, cooking = facets["Science fiction films"], facets["Home cooking"]

    r = app.t.request("PATCH", f"/v1/users/u1/profile/facets/{scifi}",
                      json={"pinned": True, "label": "Sci-fi movies",
                            "description": "Watches and rates space and science fiction films."})
    assert r.status_code == 200, r.text
    assert r.json()["pinned"] is True and r.json()["label"] == "Sci-fi movies"
    held = r.json()["strength"]
    r = app.t.request("PATCH", f"/v1/users/u1/profile/facets/{cooking}",
                      json={"suppressed": True})
    assert r.status_code == 200 and r.json()["suppressed"] is True
    # The edited text is what the vector now encodes.
    embedder = app.t.client.app.state.container.embedder  # type: ignore[attr-defined]
    expected = embedder.embed([facet_text(
        "Sci-fi movies", "Watches and rates space and science fiction films.")])[0]
    assert list(stored_vector(app, scifi)) == pytest.approx(expected, abs=1e-5)

    # A month on, with more of both topics: the pin holds its strength, the label
    # stays the user's, and the suppressed interest does not come back.
    app.clock.advance(days=30)
    app.watch("u1", ["pasta", "curry", "dune"], "b")
    after = app.refresh()
    labels = {f["label"]: f for f in after["facets"]}
    assert set(labels) == {"Sci-fi movies"}
    assert labels["Sci-fi movies"]["pinned"] and labels["Sci-fi movies"]["reinforcements"] == 1
    assert labels["Sci-fi movies"]["strength"] > held  # pinned, then reinforced
    assert [f["facet_id"] for f in after["suppressed"]] == [cooking]

    # Unpinning lets it decay from today.
    r = app.t.request("PATCH", f"/v1/users/u1/profile/facets/{scifi}", json={"pinned": False})
    pinned_strength = r.json()["strength"]
    app.clock.advance(days=7)
    assert strengths(app.profile())["Sci-fi movies"] == pytest.approx(pinned_strength / 2,
                                                                    rel=1e-3)

    triggers = [v["trigger"] for v in app.t.get("/v1/users/u1/profile/history").json()[
        "versions"]]
    assert triggers == ["edit", "refresh", "edit", "edit", "refresh"]


def test_deleting_a_facet_and_bad_edits(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")
    facet_id = app.refresh()["facets"][0]["facet_id"]
    for body, field in [({}, None), ({"pinned": "very"}, "pinned"), ({"label": "x"}, "label"),
                        ({"color": "red"}, "color")]:
        r = app.t.request("PATCH", f"/v1/users/u1/profile/facets/{facet_id}", json=body)
        assert r.status_code == 422, (body, r.text)
        if field:
            assert field in {d["field"] for d in r.json()["error"]["details"]}
    assert app.t.request("PATCH", "/v1/users/u1/profile/facets/fnope",
                         json={"pinned": True}).status_code == 404
    assert app.t.request("PATCH", f"/v1/users/ghost/profile/facets/{facet_id}",
                         json={"pinned": True}).status_code == 404

    r = app.t.delete(f"/v1/users/u1/profile/facets/{facet_id}")
    assert r.status_code == 200 and r.json() == {"facet_id": facet_id, "version": 2}
    assert app.profile()["facets"] == []
    assert app.t.delete(f"/v1/users/u1/profile/facets/{facet_id}").status_code == 404
    # History keeps it.
    oldest = app.t.get("/v1/users/u1/profile/history").json()["versions"][-1]
    assert oldest["facets"][0]["facet_id"] == facet_id


def test_history_pages_newest_first(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")
    app.refresh()
    for n in range(4):
        app.clock.advance(days=1)
        app.watch("u1", ["dune"], f"d{n}")
        app.refresh()
    page = app.t.get("/v1/users/u1/profile/history", params={"limit": 2}).json()
    assert [v["version"] for v in page["versions"]] == [5, 4] and page["next_before"] == 4
    rest = app.t.get("/v1/users/u1/profile/history",
                     params={"limit": 10, "before": page["next_before"]}).json()
    assert [v["version"] for v in rest["versions"]] == [3, 2, 1] and rest["next_before"] is None
    assert app.t.get("/v1/users/u1/profile/history",
                     params={"limit": 0}).status_code == 422


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_without_new_events_a_refresh_records_decay_without_the_model(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")
    app.refresh()
    calls = len(app.model.calls)
    app.clock.advance(days=7)
    again = app.refresh()
    assert len(app.model.calls) == calls
    assert again["version"] == 2 and strengths(again)["Science fiction films"] == pytest.approx(
        born(1) / 2, rel=1e-3)
    newest = app.t.get("/v1/users/u1/profile/history").json()["versions"][0]
    assert newest["model"] is None and newest["summary_run_id"] is None

    # Faded below the floor: archived, out of the profile, kept in history.
    app.clock.advance(days=7 * 4)
    faded = app.refresh()
    assert faded["facets"] == []
    newest = app.t.get("/v1/users/u1/profile/history").json()["versions"][0]
    assert newest["facets"][0]["archived"] is True


def test_a_declared_interest_seeds_the_first_profile(app: ProfileApp) -> None:
    app.send("u1", event("u1", "declared", None, text="I like jazz and hiking",
                         ts=app.clock() - timedelta(minutes=1), event_id="hello"),
             event("u1", "declared", None, text="no horror please", value=-1,
                   ts=app.clock() - timedelta(minutes=1), event_id="nohorror"))
    profile = app.refresh()
    facets = {f["label"]: f for f in profile["facets"]}
    # Declarations are not grouped: the user's own words seed the facets.
    assert set(facets) == {"I like jazz and hiking", "no horror please"}
    assert facets["I like jazz and hiking"]["evidence"][0]["event_id"] == "hello"
    assert facets["I like jazz and hiking"]["polarity"] == "like"
    assert facets["no horror please"]["polarity"] == "avoid"
    assert facets["I like jazz and hiking"]["strength"] == pytest.approx(0.4)


def test_a_failed_refresh_keeps_the_last_good_profile(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")
    good = app.refresh()
    app.clock.advance(days=1)
    app.watch("u1", ["bread"], "b")
    app.model.topics = {}
    app.model.before_answer = lambda: (_ for _ in ()).throw(ConnectionError("refused"))
    r = app.t.post("/v1/users/u1/profile/refresh")
    assert r.status_code == 503 and r.json()["error"]["code"] == "llm_unavailable"
    now = app.profile()
    assert now["version"] == good["version"] and now["stale"] is True
    assert now["events_since_refresh"] == 1
    assert [f["facet_id"] for f in now["facets"]] == [f["facet_id"] for f in good["facets"]]


def test_unknown_users_and_users_without_events(app: ProfileApp) -> None:
    assert app.t.get("/v1/users/ghost/profile").status_code == 404
    assert app.t.post("/v1/users/ghost/profile/refresh").status_code == 404
    assert app.t.get("/v1/users/ghost/profile/history").status_code == 404
    app.watch("u1", ["alien"], "a")
    empty = app.profile()
    assert empty["version"] == 0 and empty["facets"] == [] and empty["stale"] is True


def test_tenants_never_see_each_others_profiles(app: ProfileApp) -> None:
    other = make_tenant(app.t.client, "globex")
    other.put("/v1/items", json={"items": [item("alien", title="Alien (other tenant)")]})
    app.watch("u1", ["alien"], "a")
    facet_id = app.refresh()["facets"][0]["facet_id"]
    other.post("/v1/events", json={"events": [event("u1", "like", "alien", ts=app.clock())]})

    assert other.get("/v1/users/u1/profile").json()["version"] == 0
    assert other.request("PATCH", f"/v1/users/u1/profile/facets/{facet_id}",
                         json={"pinned": True}).status_code == 404
    assert other.delete(f"/v1/users/u1/profile/facets/{facet_id}").status_code == 404
    vectors = app.t.client.app.state.container.vectors  # type: ignore[attr-defined]
    assert vectors.ids(2, "items") == {"alien"} and len(vectors.ids(1, "items")) == len(CATALOG)
    alien = vectors._collection(1, "items").get(ids=["alien"], include=["embeddings"])
    near = nearest_items(app, 2, alien["embeddings"][0], 10)
    assert near == ["alien"]  # tenant 2's own, single item


def test_deleting_a_user_leaves_nothing_behind(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "bread"], "a")
    facet_ids = {f["facet_id"] for f in app.refresh()["facets"]}
    app.watch("u2", ["dune"], "b")
    kept = app.refresh("u2")["facets"][0]["facet_id"]
    # What an older version left in Chroma for both users.
    write_legacy_facets(app, 1, {**dict.fromkeys(facet_ids, "u1"), kept: "u2"})

    r = app.t.delete("/v1/users/u1")
    assert r.status_code == 200 and r.json()["events_deleted"] == 2
    vectors = app.t.client.app.state.container.vectors  # type: ignore[attr-defined]
    assert vectors.ids(1, "facets") == {kept}
    with app.t.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        for table in (Profile, ProfileFacetRow, ProfileVersion, SummaryRun, Event):
            user_pks = set(session.scalars(select(table.user_pk)))
            assert len(user_pks) == 1, table  # only u2's rows remain
        narratives = session.scalars(select(ProfileVersion.narrative)).all()
        assert all("Home cooking" not in n for n in narratives)
        assert session.scalar(select(func.count()).select_from(ProfileFacetRow)) == 1
    assert app.t.get("/v1/users/u1/profile").status_code == 404
    assert len(vectors.ids(1, "items")) == len(CATALOG)  # the catalog is the tenant's


def test_with_the_vector_store_down_edits_work_and_forgetting_waits(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "bread"], "a")
    first, *others = [f["facet_id"] for f in app.refresh()["facets"]]
    vectors = app.t.client.app.state.container.vectors  # type: ignore[attr-defined]
    vectors.client = VectorStoreDown()

    r = app.t.request("PATCH", f"/v1/users/u1/profile/facets/{first}",
                      json={"pinned": True, "label": "Baking"})
    assert r.status_code == 200 and r.json()["label"] == "Baking"
    for facet_id in others:
        assert app.t.delete(f"/v1/users/u1/profile/facets/{facet_id}").status_code == 200
    app.clock.advance(days=1)
    refreshed = app.refresh()  # no new events: decay only, no vector read
    assert refreshed["version"] == 3 + len(others)

    # Forgetting a user must reach a facet collection older versions may have left.
    r = app.t.delete("/v1/users/u1")
    assert r.status_code == 503 and r.json()["error"]["code"] == "vector_store_unavailable"
    assert [f["label"] for f in app.profile()["facets"]] == ["Baking"]  # nothing deleted


@pytest.fixture
def server_app(settings: Settings, chroma_server: str, tmp_path: Any,
               embedder: Embedder) -> Iterator[ProfileApp]:
    on_server = settings.model_copy(update={
        "chroma_url": chroma_server, "chroma_collection_prefix": f"t{tmp_path.name[-12:]}-"})
    yield from make_profile_app(on_server, embedder)


@pytest.mark.slow  # a real Chroma server, MiniLM
def test_the_same_memory_on_a_chroma_server(server_app: ProfileApp) -> None:
    app = server_app
    vectors = app.t.client.app.state.container.vectors  # type: ignore[attr-defined]
    assert app.t.get("/readyz").json()["checks"]["vector_store"] == "ok"
    app.watch("u1", ["alien", "dune"], "a")
    first = app.refresh()
    app.clock.advance(days=14)
    app.watch("u1", ["bread", "pasta"], "b")
    second = strengths(app.refresh())
    assert second["Home cooking"] > second["Science fiction films"]
    ids = {f["facet_id"] for f in app.profile()["facets"]}
    assert first["facets"][0]["facet_id"] in ids and facet_collections(app) == set()
    # The item vectors really live on the server: a separate client sees them there.
    url = urlparse(app.settings.chroma_url or "")
    server = chromadb.HttpClient(host=url.hostname or "", port=url.port or 0)
    items = server.get_collection(vectors.collection_name(1, "items"))
    assert set(items.get(include=[])["ids"]) == {i["item_id"] for i in CATALOG}
    # And forgetting the user clears what an older version left in its facet collection.
    write_legacy_facets(app, 1, dict.fromkeys(ids, "u1"))
    assert app.t.delete("/v1/users/u1").status_code == 200
    legacy = server.get_collection(vectors.collection_name(1, "facets"))
    assert legacy.get(include=[])["ids"] == []
