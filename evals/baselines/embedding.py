"""Mean embedding of the user's last N items, with the embedder our service uses.

This isolates what the embedding space alone buys: the same vectors our profiles are
built from, but no facets, no decay and no LLM. If ours cannot beat it, the profile
machinery is not earning its cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from evals.baselines.catalog import Catalog, fitted
from evals.types import Interaction, ItemInfo


class TextEmbedder(Protocol):
    """All this model needs from an embedder; `LocalEmbedder` and test fakes both fit."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class MeanEmbedding:
    """Cosine between every item vector and the mean vector of the last `history_size` items.

    Item vectors are computed once per `fit` in batches of `batch_size`, kept as a
    float32 matrix, and remembered by text, so refitting on another split of the same
    catalog embeds nothing new. With `cache_dir` they also survive the process (the
    file name hashes the embedder's name and the texts). Items without an `ItemInfo`
    get a zero vector: no opinion rather than the embedding of an empty string.
    """

    name = "mean-embedding"

    def __init__(self, embedder: TextEmbedder | None = None, history_size: int = 20,
                 batch_size: int = 256, cache_dir: Path | None = None) -> None:
        self.history_size = history_size
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self._embedder = embedder
        self._known: dict[str, np.ndarray] = {}
        self._catalog: Catalog | None = None
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._has_text = np.zeros(0, dtype=bool)

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        catalog = self._catalog = Catalog(train, items)
        texts = {i: items[item].text for i, item in enumerate(catalog.ids) if item in items}
        table = self._embed_all(sorted(set(texts.values())))
        dimensions = len(next(iter(table.values()))) if table else 0
        vectors = np.zeros((len(catalog), dimensions), dtype=np.float32)
        for i, text in texts.items():
            vectors[i] = table[text]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self._vectors = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self._has_text = norms.ravel() > 0

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        catalog = fitted(self._catalog)
        recent = catalog.recent_indices(history, self.history_size)
        profile = self._vectors[recent].mean(axis=0) if recent else None
        if profile is None or not np.any(profile):
            return catalog.top_k(None, k, exclude)
        scores = (self._vectors @ profile).astype(np.float64)
        scores[~self._has_text] = -np.inf  # no text: leave to the popularity fill
        return catalog.top_k(scores, k, exclude)

    def _embed_all(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Vectors for `texts`, from memory, the disk cache, or the embedder in batches."""
        path = self._cache_path(texts)
        if path is not None and path.exists():
            self._known.update(zip(texts, np.load(path), strict=True))
        missing = [t for t in texts if t not in self._known]
        if missing:
            embedder = self._embedder = self._embedder or _local_embedder()
            for start in range(0, len(missing), self.batch_size):
                batch = missing[start:start + self.batch_size]
                rows = np.asarray(embedder.embed(batch), dtype=np.float32)
                self._known.update(zip(batch, rows, strict=True))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.stack([self._known[t] for t in texts]))
        return {t: self._known[t] for t in texts}

    def _cache_path(self, texts: list[str]) -> Path | None:
        if self.cache_dir is None or not texts:
            return None
        embedder_name = getattr(self._embedder, "name", "all-MiniLM-L6-v2")
        digest = hashlib.sha256("\0".join([embedder_name, *texts]).encode()).hexdigest()[:16]
        return self.cache_dir / f"item-vectors-{digest}.npy"


def _local_embedder() -> TextEmbedder:
    """Imported late: loading sentence-transformers costs seconds nobody else should pay."""
    from service.vectors.embeddings import LocalEmbedder

    return LocalEmbedder()
