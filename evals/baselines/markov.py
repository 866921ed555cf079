"""First-order Markov chain: what people consumed right after the user's last item.

The simplest model of order; it tells us how much of the next-item signal a model
can get from the last step alone, before any sequence model is worth its cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse

from evals.baselines.catalog import Catalog, chronological, fitted
from evals.types import Interaction, ItemInfo


class Markov:
    """Transition counts item -> next item within each user's time-ordered train sequence.

    Candidates are the successors of the user's last known item, by count; no smoothing
    or back-off to older items (that would make it a different model), so when the last
    item has few successors the rest of the list is popularity.
    """

    name = "markov"

    def __init__(self) -> None:
        self._catalog: Catalog | None = None
        self._transitions: sparse.csr_matrix = sparse.csr_matrix((0, 0))

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        catalog = self._catalog = Catalog(train, items)
        sequences: dict[str, list[int]] = defaultdict(list)
        for x in chronological(train):
            sequences[x.user].append(catalog.index[x.item])
        sources: list[int] = []
        targets: list[int] = []
        for sequence in sequences.values():
            sources.extend(sequence[:-1])
            targets.extend(sequence[1:])
        n = len(catalog)
        self._transitions = sparse.csr_matrix(
            (np.ones(len(sources)), (sources, targets)), shape=(n, n))

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        catalog = fitted(self._catalog)
        last = catalog.recent_indices(history, 1)
        if not last:
            return catalog.top_k(None, k, exclude)
        scores = self._transitions[last[0]].toarray().ravel()
        scores[scores <= 0] = -np.inf
        return catalog.top_k(scores, k, exclude)
