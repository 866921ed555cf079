"""EASE (Steck, 2019): a linear item-item model with a closed-form solution.

One ridge regression of every item on all the others over the user-item matrix, with
the diagonal forced to zero; on MovieLens-sized data it is among the strongest
non-sequential baselines, and it costs one dense item x item solve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse

from evals.baselines.catalog import Catalog, fitted
from evals.types import Interaction, ItemInfo


class EASE:
    """B = I - P / diag(P) with P = (XᵀX + λI)⁻¹, X the binary positive user-item matrix.

    Positives are ratings of at least `positive_threshold` (or unrated events). The
    solve is over the `max_items` most popular items only (a 20k x 20k float64 solve
    needs about 3 GB; the rest of the catalog is reached through the popularity fill).
    A user's scores are the sum of B's rows of their positive train items.
    """

    name = "ease"

    def __init__(self, regularization: float = 500.0, positive_threshold: float = 3.5,
                 max_items: int = 20_000) -> None:
        self.regularization = regularization
        self.positive_threshold = positive_threshold
        self.max_items = max_items
        self._catalog: Catalog | None = None
        self._kept = np.empty(0, dtype=np.int64)  # catalog index of each modelled item
        self._position: dict[int, int] = {}
        self._weights = np.zeros((0, 0))

    def _positive(self, x: Interaction) -> bool:
        return x.rating is None or x.rating >= self.positive_threshold

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        catalog = self._catalog = Catalog(train, items)
        liked = [x for x in train if self._positive(x)]
        users = {user: u for u, user in enumerate(sorted({x.user for x in liked}))}
        rows = np.array([users[x.user] for x in liked], dtype=np.int64)
        cols = np.array([catalog.index[x.item] for x in liked], dtype=np.int64)
        counts = np.bincount(cols, minlength=len(catalog))
        kept = np.flatnonzero(counts > 0)
        if len(kept) > self.max_items:
            kept = np.sort(np.argsort(-counts, kind="stable")[:self.max_items])
        self._kept = kept
        self._position = {int(i): p for p, i in enumerate(kept.tolist())}
        if len(kept) == 0:
            self._weights = np.zeros((0, 0))
            return
        column = np.full(len(catalog), -1, dtype=np.int64)
        column[kept] = np.arange(len(kept))
        inside = column[cols] >= 0
        matrix = sparse.csr_matrix(
            (np.ones(int(inside.sum())), (rows[inside], column[cols[inside]])),
            shape=(len(users), len(kept)))
        matrix.data[:] = 1.0  # a repeated (user, item) pair counts once
        gram = (matrix.T @ matrix).toarray()
        gram[np.diag_indices_from(gram)] += self.regularization
        precision = np.linalg.inv(gram)
        weights = precision / -np.diag(precision)
        weights[np.diag_indices_from(weights)] = 0.0
        self._weights = weights

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        catalog = fitted(self._catalog)
        liked = [self._position[i] for i in
                 {catalog.index[x.item] for x in history
                  if self._positive(x) and x.item in catalog.index}
                 if i in self._position]
        if not liked:
            return catalog.top_k(None, k, exclude)
        scores = np.full(len(catalog), -np.inf)
        scores[self._kept] = self._weights[sorted(liked)].sum(axis=0)
        return catalog.top_k(scores, k, exclude)
