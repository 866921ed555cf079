"""Chroma, one collection per tenant and kind, so isolation holds by construction.

Queries never need a `where` filter on the hot path (filtered queries measured
10-20x slower than unfiltered here). Vectors come from our own embedder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI

from service.core.config import Settings

Kind = Literal["items", "facets"]


@dataclass(frozen=True)
class Neighbour:
    id: str
    similarity: float  # cosine similarity, 1 = same direction
    metadata: Mapping[str, Any]


def client_for(settings: Settings) -> ClientAPI:
    """A Chroma server when INTEREST_CHROMA_URL is set, else a folder in the data dir."""
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(host=url.hostname or "localhost", port=url.port or 8000,
                                   ssl=url.scheme == "https")
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path))


class VectorStore:
    def __init__(self, client: ClientAPI) -> None:
        self.client = client

    @staticmethod
    def collection_name(tenant_id: int, kind: Kind) -> str:
        return f"tenant{tenant_id}-{kind}"

    def _collection(self, tenant_id: int, kind: Kind) -> Any:
        return self.client.get_or_create_collection(
            self.collection_name(tenant_id, kind), embedding_function=None,
            metadata={"hnsw:space": "cosine"},
        )

    def upsert(self, tenant_id: int, kind: Kind, ids: Sequence[str],
               vectors: Sequence[Sequence[float]],
               metadatas: Sequence[Mapping[str, Any]] | None = None) -> None:
        if not ids:
            return
        self._collection(tenant_id, kind).upsert(
            ids=list(ids), embeddings=[list(v) for v in vectors],
            metadatas=[dict(m) for m in metadatas] if metadatas else None,
        )

    def query(self, tenant_id: int, kind: Kind, vectors: Sequence[Sequence[float]],
              n: int) -> list[list[Neighbour]]:
        """For each query vector, the n nearest entries (one batched call)."""
        collection = self._collection(tenant_id, kind)
        if not vectors or collection.count() == 0:
            return [[] for _ in vectors]
        found = collection.query(query_embeddings=[list(v) for v in vectors],
                                 n_results=min(n, collection.count()),
                                 include=["distances", "metadatas"])
        return [
            [Neighbour(id=i, similarity=1.0 - float(d), metadata=m or {})
             for i, d, m in zip(ids, dists, metas, strict=True)]
            for ids, dists, metas in zip(found["ids"], found["distances"] or [],
                                         found["metadatas"] or [], strict=True)
        ]

    def delete(self, tenant_id: int, kind: Kind, ids: Sequence[str]) -> None:
        if ids:
            self._collection(tenant_id, kind).delete(ids=list(ids))

    def ids(self, tenant_id: int, kind: Kind) -> set[str]:
        return set(self._collection(tenant_id, kind).get(include=[])["ids"])

    def health(self) -> str:
        try:
            self.client.heartbeat()
        except Exception as exc:  # any client error means the store is unreachable
            return f"unreachable: {type(exc).__name__}"
        return "ok"
