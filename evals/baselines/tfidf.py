"""TF-IDF content similarity: recommend items whose text resembles what the user had.

The lexical content baseline: it needs no other users, so it shows how much the
embedding models gain over plain word overlap on the same item texts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from evals.baselines.catalog import Catalog, fitted
from evals.types import Interaction, ItemInfo


class TfidfContent:
    """Cosine between each item's TF-IDF vector and the user's profile.

    The profile is the mean of the vectors of the user's last `history_size` distinct
    items, weighted by their rating when `rating_weighted` (so a 5-star film pulls ten
    times harder than a half-star one; unrated events weigh 1). Items sharing no term
    with the profile get no score and are reached through the popularity fill.
    """

    name = "tfidf"

    def __init__(self, history_size: int = 20, rating_weighted: bool = True) -> None:
        self.history_size = history_size
        self.rating_weighted = rating_weighted
        self._catalog: Catalog | None = None
        self._vectors: sparse.csr_matrix | None = None

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        catalog = self._catalog = Catalog(train, items)
        texts = [items[i].text if i in items else "" for i in catalog.ids]
        vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
        try:
            self._vectors = sparse.csr_matrix(vectorizer.fit_transform(texts))  # rows are unit
        except ValueError:  # no item has any text: nothing to be similar about
            self._vectors = None

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        catalog = fitted(self._catalog)
        recent = catalog.recent_indices(history, self.history_size)
        if self._vectors is None or not recent:
            return catalog.top_k(None, k, exclude)
        weights = np.ones(len(recent))
        if self.rating_weighted:
            rating = {catalog.index[x.item]: x.rating
                      for x in history if x.item in catalog.index}
            weights = np.array([r if (r := rating[i]) is not None else 1.0 for i in recent])
        profile = self._vectors[recent].T @ weights
        scores = np.asarray(self._vectors @ profile, dtype=np.float64).ravel()
        scores[scores <= 1e-12] = -np.inf
        return catalog.top_k(scores, k, exclude)
