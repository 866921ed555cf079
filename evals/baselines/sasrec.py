"""SASRec: the service's own self-attention sequence model as an eval baseline.

The same class the per-tenant training fits (`service.training.sequence`), so the
number in the report is the number of the model the service runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from evals.baselines.catalog import Catalog, chronological, fitted
from evals.types import Interaction, ItemInfo
from service.training.data import History, event_weight, log_from_rows
from service.training.sequence import SequenceModel


class SASRecRecommender:
    """Fits `SequenceModel` on every train interaction (time-ordered per user) within a
    time budget of `seconds`, or for `epochs` epochs whatever the time; recommends the
    most probable next items."""

    name = "sasrec"

    def __init__(self, seconds: float = 60.0, seed: int = 0, max_epochs: int = 200,
                 rating_max: float = 5.0, epochs: int | None = None) -> None:
        self.seconds = math.inf if epochs else seconds
        self.seed = seed
        self.max_epochs = epochs or max_epochs
        self.rating_max = rating_max
        self._catalog: Catalog | None = None
        self._model: SequenceModel | None = None
        self._index: dict[str, int] = {}
        self._to_catalog = np.empty(0, dtype=np.int64)

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        catalog = self._catalog = Catalog(train, items)
        log = log_from_rows(
            (x.user, x.item, float(x.ts), event_weight("rating", x.rating, self.rating_max),
             str(x.seq)) for x in chronological(train))
        self._index = {item: i for i, item in enumerate(log.item_ids)}
        self._to_catalog = np.array([catalog.index[i] for i in log.item_ids], dtype=np.int64)
        model = SequenceModel(seconds=self.seconds, seed=self.seed, max_epochs=self.max_epochs)
        self._model = model.fit(log, len(log.item_ids)) if len(log) else None

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        catalog = fitted(self._catalog)
        if self._model is None:
            return catalog.top_k(None, k, exclude)
        recent = history[-self._model.max_len:]
        items = np.array([self._index.get(x.item, -1) for x in recent], dtype=np.int64)
        probabilities = self._model.scores(
            History(items=items, ts=np.zeros(len(items)), weight=np.ones(len(items))))
        if probabilities is None:
            return catalog.top_k(None, k, exclude)
        scores = np.full(len(catalog), -np.inf)
        scores[self._to_catalog] = probabilities
        return catalog.top_k(scores, k, exclude)
