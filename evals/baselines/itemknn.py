"""Item-kNN on co-occurrence: "people who had this also had that".

The classic strong non-neural baseline for implicit feedback; if a sequence model or
our profiles lose to it, their extra machinery is not paying off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse

from evals.baselines.catalog import Catalog, fitted
from evals.types import Interaction, ItemInfo

_BLOCK_CELLS = 4_000_000  # dense similarity cells held at once while pruning (16 MB)


class ItemKNN:
    """Cosine-normalised co-occurrence, pruned to each item's `neighbours` best.

    sim(i, j) = |users with i and j| / sqrt(|users with i| * |users with j|), over every
    training interaction whatever its rating (a low rating still says the two were
    consumed together). A user's candidates are scored by the sum of similarities to
    their last `history_size` distinct items; pruning keeps the matrix small and drops
    the long tail of one-off co-occurrences that mostly add noise.
    """

    name = "item-knn"

    def __init__(self, neighbours: int = 100, history_size: int = 50) -> None:
        self.neighbours = neighbours
        self.history_size = history_size
        self._catalog: Catalog | None = None
        self._similarity: sparse.csr_matrix = sparse.csr_matrix((0, 0))

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        catalog = self._catalog = Catalog(train, items)
        n = len(catalog)
        users = {user: u for u, user in enumerate(sorted({x.user for x in train}))}
        rows = np.array([users[x.user] for x in train], dtype=np.int64)
        cols = np.array([catalog.index[x.item] for x in train], dtype=np.int64)
        consumed = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), n))
        consumed.data[:] = 1.0  # repeats of a (user, item) pair were summed; count them once
        norm = np.sqrt(np.asarray(consumed.sum(axis=0)).ravel())
        norm[norm == 0] = 1.0
        by_item = consumed.T.tocsr()

        parts: list[sparse.csr_matrix] = []
        block = max(1, _BLOCK_CELLS // max(n, 1))
        for start in range(0, n, block):
            stop = min(n, start + block)
            dense = (by_item[start:stop] @ consumed).toarray()
            dense /= norm[start:stop, None]
            dense /= norm[None, :]
            dense[np.arange(stop - start), np.arange(start, stop)] = 0.0
            parts.append(sparse.csr_matrix(_keep_best(dense, self.neighbours)))
        self._similarity = (
            sparse.vstack(parts, format="csr") if parts else sparse.csr_matrix((n, n)))

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        catalog = fitted(self._catalog)
        recent = catalog.recent_indices(history, self.history_size)
        if not recent:
            return catalog.top_k(None, k, exclude)
        scores = np.asarray(self._similarity[recent].sum(axis=0), dtype=np.float64).ravel()
        scores[scores <= 0] = -np.inf
        return catalog.top_k(scores, k, exclude)


def _keep_best(similarity: np.ndarray, limit: int) -> np.ndarray:
    """Zero all but each row's `limit` largest positive entries; ties go to the lower id."""
    if limit >= similarity.shape[1]:
        return similarity
    column = similarity.shape[1] - limit
    threshold = np.partition(similarity, column, axis=1)[:, column, None]
    above = similarity > threshold
    tied = similarity == threshold
    room = limit - above.sum(axis=1, keepdims=True)
    keep = (above | (tied & (np.cumsum(tied, axis=1) <= room))) & (similarity > 0)
    return np.where(keep, similarity, 0.0)
