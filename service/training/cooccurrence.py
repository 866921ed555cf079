"""Item-item co-occurrence of liked items: "people who liked this also liked that".

Counted within each user's time-ordered positive history, with pairs that sit close
in the sequence counting more than pairs far apart, cosine-normalised so that merely
popular items do not neighbour everything, and cut to the top K neighbours per item:
a sparse matrix of at most K x items entries, whatever the catalog size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import sparse

from service.training.contract import InteractionLog
from service.training.data import (
    POSITIVE,
    History,
    Ints,
    Ranked,
    neighbour_scores,
    top_k_rows,
)


class CoOccurrence:
    """Top-K cosine neighbours of each item over liked-item pairs.

    A pair d positions apart in a user's liked sequence counts 1 / (1 + (d - 1) / `spread`),
    up to `window` positions apart. A user's score for an item sums, over their last
    `recent` liked items, that item's neighbour score times `recency`^age (age 0 = the
    newest liked item) times how much they liked it; each liked item whose share is
    substantial is one of the item's `vias` (`neighbour_scores`).
    """

    name = "cooccurrence"

    def __init__(self, neighbours: int = 100, window: int = 50, spread: float = 8.0,
                 recent: int = 20, recency: float = 0.9) -> None:
        self.neighbours = neighbours
        self.window = window
        self.spread = spread
        self.recent = recent
        self.recency = recency
        self.matrix = sparse.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, log: InteractionLog, n_items: int) -> CoOccurrence:
        liked = np.flatnonzero(log.weight >= POSITIVE)
        by_user = liked[np.argsort(log.users[liked], kind="stable")]
        users = log.users[by_user].astype(np.int64)
        items = log.items[by_user].astype(np.int64)
        # Each (user, item) once, at its first liked event.
        _, first = np.unique(users * n_items + items, return_index=True)
        first.sort()
        users, items = users[first], items[first]
        counts = np.bincount(items, minlength=n_items).astype(np.float64)
        pairs = sparse.csr_matrix((n_items, n_items), dtype=np.float64)
        for d in range(1, min(self.window, len(items)) + 1):
            same = users[:-d] == users[d:]
            if not same.any():
                break
            a, b = items[:-d][same], items[d:][same]
            weight = np.full(len(a), 1.0 / (1.0 + (d - 1) / self.spread))
            pairs = pairs + sparse.csr_matrix((weight, (a, b)), shape=(n_items, n_items))
        pairs = (pairs + pairs.T).tocoo()
        norm = np.sqrt(np.maximum(counts, 1.0))
        values = pairs.data / (norm[pairs.row] * norm[pairs.col])
        rows, cols, vals = top_k_rows(pairs.row.astype(np.int64), pairs.col.astype(np.int64),
                                      values, n_items, self.neighbours)
        self.matrix = sparse.csr_matrix((vals.astype(np.float32), (rows, cols)),
                                        shape=(n_items, n_items))
        return self

    def neighbours_of(self, item: int) -> Ints:
        """The item's neighbours, best first (for inspection and tests)."""
        start, end = self.matrix.indptr[item], self.matrix.indptr[item + 1]
        cols = self.matrix.indices[start:end]
        order = np.lexsort((cols, -self.matrix.data[start:end]))
        return np.asarray(cols[order], dtype=np.int64)

    def recommend(self, history: History, n: int, excluded: Ints) -> Ranked:
        recent = history.recent(self.recent, positive=True)
        if len(recent) == 0 or self.matrix.shape[0] == 0:
            return Ranked.empty()
        weights = self.recency ** np.arange(len(recent)) * history.weight[recent]
        return neighbour_scores(self.matrix, history.items[recent], weights, recent, n,
                                excluded)

    def save(self, directory: Path) -> None:
        sparse.save_npz(directory / "cooccurrence.npz", self.matrix)
        (directory / "cooccurrence.json").write_text(json.dumps({
            "neighbours": self.neighbours, "window": self.window, "spread": self.spread,
            "recent": self.recent, "recency": self.recency}))

    @classmethod
    def load(cls, directory: Path) -> CoOccurrence:
        model = cls(**json.loads((directory / "cooccurrence.json").read_text()))
        model.matrix = sparse.csr_matrix(sparse.load_npz(directory / "cooccurrence.npz"))
        return model
