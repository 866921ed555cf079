"""First-order transitions: what people went on to next after an item.

The order signal at its simplest (the eval's Markov baseline shows how much of the
next item the last step alone predicts); kept per tenant as the top K successors of
each item, so a user's last few items give candidates in one sparse lookup.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import sparse

from service.training.contract import InteractionLog
from service.training.data import History, Ints, Ranked, neighbour_scores, top_k_rows, user_runs


class Transitions:
    """P(next = j | item = i) from consecutive events of each user, top K per item.

    Every consecutive pair counts, a liked next item (weight 1) twice as much as a
    disliked one (weight 0): the user still went there, but it is a worse suggestion.
    A user's scores come from their last `last` distinct items, the newest weighted 1,
    older ones by `decay` per step back; each of those whose share is substantial is one
    of the item's `vias` (`neighbour_scores`).
    """

    name = "transition"

    def __init__(self, successors: int = 100, last: int = 3, decay: float = 0.5) -> None:
        self.successors = successors
        self.last = last
        self.decay = decay
        self.matrix = sparse.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, log: InteractionLog, n_items: int) -> Transitions:
        order, _ = user_runs(log)
        items = log.items[order].astype(np.int64)
        users = log.users[order]
        weight = log.weight[order].astype(np.float64)
        step = (users[:-1] == users[1:]) & (items[:-1] != items[1:])
        a, b = items[:-1][step], items[1:][step]
        counts = sparse.csr_matrix((0.5 + 0.5 * weight[1:][step], (a, b)),
                                   shape=(n_items, n_items)).tocoo()
        out = np.bincount(counts.row, weights=counts.data, minlength=n_items)
        # A little smoothing: one sighting of a rare item's successor is weaker evidence.
        values = counts.data / (out[counts.row] + 1.0)
        rows, cols, vals = top_k_rows(counts.row.astype(np.int64), counts.col.astype(np.int64),
                                      values, n_items, self.successors)
        self.matrix = sparse.csr_matrix((vals.astype(np.float32), (rows, cols)),
                                        shape=(n_items, n_items))
        return self

    def successors_of(self, item: int) -> Ints:
        start, end = self.matrix.indptr[item], self.matrix.indptr[item + 1]
        cols = self.matrix.indices[start:end]
        order = np.lexsort((cols, -self.matrix.data[start:end]))
        return np.asarray(cols[order], dtype=np.int64)

    def recommend(self, history: History, n: int, excluded: Ints) -> Ranked:
        recent = history.recent(self.last, positive=False)
        if len(recent) == 0 or self.matrix.shape[0] == 0:
            return Ranked.empty()
        weights = self.decay ** np.arange(len(recent), dtype=np.float64)
        return neighbour_scores(self.matrix, history.items[recent], weights, recent, n,
                                excluded)

    def save(self, directory: Path) -> None:
        sparse.save_npz(directory / "transitions.npz", self.matrix)
        (directory / "transitions.json").write_text(json.dumps({
            "successors": self.successors, "last": self.last, "decay": self.decay}))

    @classmethod
    def load(cls, directory: Path) -> Transitions:
        model = cls(**json.loads((directory / "transitions.json").read_text()))
        model.matrix = sparse.csr_matrix(sparse.load_npz(directory / "transitions.npz"))
        return model
