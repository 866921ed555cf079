"""Chroma: a folder in a temp dir (hashed-words vectors), and a real `chroma run` server
with real MiniLM embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.core.config import Settings
from service.core.errors import ApiError
from service.vectors.embeddings import Embedder
from service.vectors.errors import vector_store_call
from service.vectors.store import VectorStore, client_for
from tests.utils.servers import free_port

TEXTS = {
    "jazz": "Kind of Blue, a modal jazz record with trumpet and saxophone",
    "hike": "Trail guide to alpine hiking routes and mountain huts",
    "scifi": "A space opera about a starship crew exploring distant galaxies",
}


def store_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
              prefix: str = "") -> VectorStore:
    chroma_url = request.getfixturevalue("chroma_server") if kind == "server" else None
    return VectorStore(client_for(Settings(data_dir=tmp_path, chroma_url=chroma_url)), prefix)


@pytest.mark.parametrize("where", ["folder", pytest.param("server", marks=pytest.mark.slow)])
def test_nearest_neighbours_per_tenant(tmp_path: Path, embedder: Embedder,
                                       request: pytest.FixtureRequest, where: str) -> None:
    store = store_for(where, tmp_path, request)
    assert store.health() == "ok"
    ids = list(TEXTS)
    store.upsert(1, "items", ids, embedder.embed(list(TEXTS.values())),
                 [{"title": k} for k in ids])
    store.upsert(2, "items", ["other"], embedder.embed(["jazz saxophone quartet"]))

    def nearest(tenant_id: int, text: str, n: int,
                where: dict[str, str] | None = None) -> list[tuple[str, float]]:
        query = np.asarray(embedder.embed([text]), dtype=np.float32)
        (found,) = store.nearest(tenant_id, "items", query, n, where)
        return found

    hits, space = nearest(1, "saxophone jazz album", 2), nearest(1, "galaxy starship adventure", 2)
    assert hits[0][0] == "jazz"
    assert space[0][0] == "scifi" and space[0][1] > space[1][1]
    # The metadata is stored with each vector: a list's category filter asks for it.
    assert [i for i, _ in nearest(1, "galaxy starship adventure", 3, {"title": "jazz"})] == [
        "jazz"]
    # Tenant 2's collection holds only its own item; tenant 1 never sees it.
    assert store.ids(2, "items") == {"other"}
    assert "other" not in {i for i, _ in hits}

    store.delete(1, "items", ["jazz"])
    assert store.ids(1, "items") == {"hike", "scifi"}
    assert nearest(3, "x", 5) == []  # a tenant with nothing indexed


@pytest.mark.parametrize("where", ["folder", pytest.param("server", marks=pytest.mark.slow)])
def test_forgetting_a_user_clears_a_legacy_facet_collection(
        tmp_path: Path, embedder: Embedder, request: pytest.FixtureRequest, where: str) -> None:
    """Older versions kept facet vectors in Chroma, with the user's id in the metadata."""
    store = store_for(where, tmp_path, request, prefix=f"t{tmp_path.name[-12:]}-")
    vectors = embedder.embed(["jazz", "hiking", "space opera"])
    store.upsert(1, "facets", ["f1", "f2", "f3"], vectors,
                 [{"user_id": u, "polarity": "like"} for u in ("u1", "u1", "u2")])
    store.forget_legacy_facets(1, "u1")
    assert store.ids(1, "facets") == {"f3"}

    # Where no older version wrote one, none is created.
    store.forget_legacy_facets(2, "u1")
    names = {c.name for c in store.client.list_collections()}
    assert store.collection_name(2, "facets") not in names


class CountingClient:
    """A real Chroma client whose collections count the reads that reach them, and
    fail the next `failures` of them as a dropped collection's stale handle would."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.gets: list[list[str]] = []
        self.failures = 0

    def get_or_create_collection(self, name: str, **kw: Any) -> Any:
        return CountingCollection(self, self.client.get_or_create_collection(name, **kw))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class CountingCollection:
    def __init__(self, owner: CountingClient, collection: Any) -> None:
        self.owner, self.collection = owner, collection

    def get(self, **kw: Any) -> Any:
        if self.owner.failures:
            self.owner.failures -= 1
            raise RuntimeError("collection gone")
        self.owner.gets.append(sorted(kw.get("ids") or []))
        return self.collection.get(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)


def test_vectors_are_cached_by_version_least_recently_used_out(tmp_path: Path) -> None:
    counting = CountingClient(client_for(Settings(data_dir=tmp_path)))
    store = VectorStore(counting, cached_vectors=2)  # type: ignore[arg-type]
    store.upsert(1, "items", ["a", "b", "c"], [[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])

    got = store.vectors(1, "items", {"a": "v1", "b": "v1"})
    assert np.allclose(got["a"], [1.0, 0.0]) and np.allclose(got["b"], [0.0, 1.0])  # unit length
    assert counting.gets == [["a", "b"]]
    store.vectors(1, "items", {"a": "v1"})  # a hit: "a" is now the most recent
    store.vectors(1, "items", {"c": "v1"})  # the cache holds two: "b" goes
    assert counting.gets == [["a", "b"], ["c"]]
    store.vectors(1, "items", {"a": "v1", "b": "v1", "c": "v1"})
    assert counting.gets[-1] == ["b"]
    store.vectors(1, "items", {"c": "v2"})  # a changed item is read again
    assert counting.gets[-1] == ["c"]
    assert store.vectors(1, "items", {"gone": "v1"}) == {}  # ids the store lacks are left out


def test_a_failed_read_is_tried_once_more_on_a_fresh_handle(tmp_path: Path) -> None:
    counting = CountingClient(client_for(Settings(data_dir=tmp_path)))
    store = VectorStore(counting)  # type: ignore[arg-type]
    store.upsert(1, "items", ["a"], [[1.0, 0.0]])
    counting.failures = 1
    assert list(store.vectors(1, "items", {"a": "v1"})) == ["a"]
    counting.failures = 2  # twice in a row: the error reaches the caller
    with pytest.raises(RuntimeError, match="collection gone"):
        store.vectors(1, "items", {"a": "v2"})


@pytest.mark.slow
def test_a_store_made_while_the_server_is_down_connects_once_it_is_up(
        tmp_path: Path, chroma_server: str) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    target = {"url": down}
    store = VectorStore(None, "lazy", connect=lambda: client_for(
        Settings(data_dir=tmp_path, chroma_url=target["url"])))
    assert VectorStore.for_settings(Settings(data_dir=tmp_path, chroma_url=down))  # no raise
    assert store.health().startswith("unreachable")
    with pytest.raises(ApiError) as failed:
        with vector_store_call():
            store.ids(1, "items")
    assert failed.value.status == 503
    target["url"] = chroma_server  # the server is back: the next use connects
    assert store.health() == "ok"
    store.upsert(1, "items", ["a"], [[1.0] + [0.0] * 383], [{"item_id": "a"}])
    assert store.ids(1, "items") == {"a"}
