"""Chroma: a folder in a temp dir (hashed-words vectors), and a real `chroma run` server
with real MiniLM embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.config import Settings
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore, client_for

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

    (hits,), (space,) = (store.query(1, "items", embedder.embed([q]), 2)
                         for q in ["saxophone jazz album", "galaxy starship adventure"])
    assert hits[0].id == "jazz" and hits[0].metadata == {"title": "jazz"}
    assert space[0].id == "scifi" and space[0].similarity > space[1].similarity
    # Tenant 2's collection holds only its own item; tenant 1 never sees it.
    assert store.ids(2, "items") == {"other"}
    assert "other" not in {n.id for n in hits}

    store.delete(1, "items", ["jazz"])
    assert store.ids(1, "items") == {"hike", "scifi"}
    assert store.query(3, "facets", embedder.embed(["x"]), 5) == [[]]


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
