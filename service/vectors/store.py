"""Chroma, one collection per tenant and kind, so isolation holds by construction.

Queries never need a `where` filter on the hot path (filtered queries measured
10-20x slower than unfiltered here). Vectors come from our own embedder.

On the local (Rust) backend, returning metadata or embeddings with a query costs
more than the search itself (10 query vectors, 30 results each, 50k items, best
runs on 2 cores: ~6 ms for ids and distances, ~17 ms with embeddings, ~22 ms with
metadata). The read path of recommendations therefore asks for distances only and
reads vectors through an in-process cache keyed by a version the caller supplies
(the item's indexed text hash), so a changed item is never served a stale vector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlparse

import chromadb
import numpy as np
import numpy.typing as npt
from cachetools import LRUCache
from chromadb.api import ClientAPI
from chromadb.errors import NotFoundError
from tenacity import RetryCallState, retry, stop_after_attempt

from service.core.config import Settings

# "facets": a collection older versions wrote (facet vectors now live in SQL with each
# profile version); it is only ever deleted from (`forget_legacy_facets`).
Kind = Literal["items", "facets"]


def client_for(settings: Settings) -> ClientAPI:
    """A Chroma server when INTEREST_CHROMA_URL is set, else a folder in the data dir."""
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(host=url.hostname or "localhost", port=url.port or 8000,
                                   ssl=url.scheme == "https")
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path))


def _on_fresh_handle(state: RetryCallState) -> None:
    """Before `VectorStore._read` tries again: forget the handle that failed."""
    store, tenant_id, kind = state.args[:3]
    store._forget_handle(tenant_id, kind)


class VectorStore:
    def __init__(self, client: ClientAPI | None, prefix: str = "",
                 cached_vectors: int = 100_000,
                 connect: Callable[[], ClientAPI] | None = None) -> None:
        """`client`, or `connect` to make one on first use (see `client`)."""
        if client is None and connect is None:
            raise ValueError("VectorStore needs a client or a way to connect one")
        self._client = client
        self._connect = connect
        self._connecting = threading.Lock()
        self.prefix = prefix
        self._lock = threading.Lock()  # guards both: cachetools caches are not thread-safe
        self._handles: dict[str, Any] = {}
        # (collection, id) -> (version, unit vector)
        self._vectors: LRUCache[tuple[str, str], tuple[str, npt.NDArray[np.float32]]] = (
            LRUCache(maxsize=cached_vectors))

    @classmethod
    def for_settings(cls, settings: Settings) -> VectorStore:
        """The store the settings name. A Chroma server is connected on first use, so a
        process started while the server is down still starts (its calls fail, as they
        would during any outage, until the server is back); the folder opens at once."""
        if settings.chroma_url:
            return cls(None, settings.chroma_collection_prefix,
                       connect=lambda: client_for(settings))
        return cls(client_for(settings), settings.chroma_collection_prefix)

    @property
    def client(self) -> ClientAPI:
        """The Chroma client; made by `connect` on first use, and again on the next use
        when that failed (the server is down: the error goes to the caller)."""
        client = self._client
        if client is None:
            with self._connecting:
                if self._client is None:
                    assert self._connect is not None
                    self._client = self._connect()
                client = self._client
        return client

    @client.setter
    def client(self, client: ClientAPI) -> None:
        """Use this client from now on (tests stand a failing one in)."""
        self._client = client

    def collection_name(self, tenant_id: int, kind: Kind) -> str:
        return f"{self.prefix}tenant{tenant_id}-{kind}"

    def _collection(self, tenant_id: int, kind: Kind) -> Any:
        return self.client.get_or_create_collection(
            self.collection_name(tenant_id, kind), embedding_function=None,
            metadata={"hnsw:space": "cosine"},
        )

    def _read_handle(self, tenant_id: int, kind: Kind) -> Any:
        """A collection handle kept for reads (looking one up costs about a millisecond)."""
        name = self.collection_name(tenant_id, kind)
        with self._lock:
            handle = self._handles.get(name)
        if handle is None:
            handle = self._collection(tenant_id, kind)
            with self._lock:
                self._handles[name] = handle
        return handle

    def _forget_handle(self, tenant_id: int, kind: Kind) -> None:
        with self._lock:
            self._handles.pop(self.collection_name(tenant_id, kind), None)

    @retry(stop=stop_after_attempt(2), before_sleep=_on_fresh_handle, reraise=True)
    def _read(self, tenant_id: int, kind: Kind, call: str, **kw: Any) -> Any:
        """`query` or `get` on the kept handle; once more on a fresh one if that fails
        with any client error (the collection may have been dropped and re-created
        behind our back)."""
        return getattr(self._read_handle(tenant_id, kind), call)(**kw)

    def nearest(self, tenant_id: int, kind: Kind, vectors: npt.NDArray[np.float32], n: int,
                where: Mapping[str, Any] | None = None) -> list[list[tuple[str, float]]]:
        """For each query vector, up to n (id, cosine similarity) pairs, nearest first.

        One batched call, distances only; fewer than n come back when the
        collection (or the `where` filter) holds fewer.
        """
        if len(vectors) == 0 or n < 1:
            return [[] for _ in range(len(vectors))]
        found = self._read(tenant_id, kind, "query", query_embeddings=vectors, n_results=n,
                           include=["distances"], where=dict(where) if where else None)
        return [
            [(i, 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)]
            for ids, dists in zip(found["ids"], found["distances"] or [], strict=True)
        ]

    def vectors(self, tenant_id: int, kind: Kind,
                versions: Mapping[str, str]) -> dict[str, npt.NDArray[np.float32]]:
        """Stored vectors (unit length) by id, in one call for those not cached.

        `versions` maps each id to what its vector was made from (a content hash):
        a cached vector is used only while that version is unchanged. Ids the store
        does not hold are left out.
        """
        name = self.collection_name(tenant_id, kind)
        found: dict[str, npt.NDArray[np.float32]] = {}
        with self._lock:
            for item_id, version in versions.items():
                cached = self._vectors.get((name, item_id))  # a hit is now most recent
                if cached is not None and cached[0] == version:
                    found[item_id] = cached[1]
        missing = [i for i in versions if i not in found]
        if not missing:
            return found
        got = self._read(tenant_id, kind, "get", ids=missing, include=["embeddings"])
        embeddings = got["embeddings"]
        if embeddings is None or len(embeddings) == 0:
            return found
        matrix = np.asarray(embeddings, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        with self._lock:
            for item_id, vector in zip(got["ids"], matrix, strict=True):
                found[item_id] = vector
                self._vectors[(name, item_id)] = (versions[item_id], vector)
        return found

    def _forget_vectors(self, tenant_id: int, kind: Kind, ids: Sequence[str]) -> None:
        name = self.collection_name(tenant_id, kind)
        with self._lock:
            for item_id in ids:
                self._vectors.pop((name, item_id), None)

    def upsert(self, tenant_id: int, kind: Kind, ids: Sequence[str],
               vectors: Sequence[Sequence[float]],
               metadatas: Sequence[Mapping[str, Any]] | None = None) -> None:
        if not ids:
            return
        self._forget_vectors(tenant_id, kind, ids)
        self._collection(tenant_id, kind).upsert(
            ids=list(ids), embeddings=[list(v) for v in vectors],
            metadatas=[dict(m) for m in metadatas] if metadatas else None,
        )

    def delete(self, tenant_id: int, kind: Kind, ids: Sequence[str]) -> None:
        if ids:
            self._forget_vectors(tenant_id, kind, ids)
            self._collection(tenant_id, kind).delete(ids=list(ids))

    def forget_legacy_facets(self, tenant_id: int, user_id: str) -> None:
        """Delete a user's entries from the tenant's facet collection, if there is one.

        Older versions kept each active facet's vector there, with the user's id in its
        metadata; nothing reads or writes it now, but forgetting a user must leave nothing
        of theirs behind. Never creates the collection.
        """
        try:
            collection = self.client.get_collection(self.collection_name(tenant_id, "facets"),
                                                    embedding_function=None)
        except NotFoundError:
            return
        collection.delete(where={"user_id": user_id})

    def ids(self, tenant_id: int, kind: Kind) -> set[str]:
        return set(self._collection(tenant_id, kind).get(include=[])["ids"])

    def health(self) -> str:
        try:
            self.client.heartbeat()
        except Exception as exc:  # any client error means the store is unreachable
            return f"unreachable: {type(exc).__name__}"
        return "ok"
