"""TF-IDF content similarity: items whose text is like what the user liked.

The one model that can suggest an item nobody has touched yet. Rows are unit TF-IDF
vectors of each item's text (title, tags, category, description); a user is the
recency-weighted mean of their liked items' rows, cut to its strongest terms so a
lookup touches only the items sharing those terms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from service.training.data import History, Ints, Ranked, top_scored


class ContentSimilarity:
    """Cosine similarity of item TF-IDF rows to the user's liked-item profile."""

    name = "content"

    def __init__(self, recent: int = 20, recency: float = 0.9, terms: int = 64) -> None:
        self.recent = recent
        self.recency = recency
        self.terms = terms
        self.matrix = sparse.csr_matrix((0, 0), dtype=np.float32)
        self._by_term = sparse.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, item_ids: Sequence[str], item_texts: Mapping[str, str]) -> ContentSimilarity:
        """Raises ValueError when no item has any usable text."""
        vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", dtype=np.float32,
                                     max_features=500_000)
        matrix = vectorizer.fit_transform([item_texts.get(i, "") for i in item_ids])
        self._set(sparse.csr_matrix(matrix, dtype=np.float32))
        return self

    def _set(self, matrix: sparse.csr_matrix) -> None:
        self.matrix = matrix
        self._by_term = sparse.csr_matrix(matrix.T)

    def similar(self, item: int) -> Ints:
        """Items by similarity to one item, best first (for inspection and tests)."""
        scores = (self.matrix @ self.matrix[item].T).toarray().ravel().astype(np.float64)
        return top_scored(scores, len(scores), np.array([item], dtype=np.int64))

    def recommend(self, history: History, n: int, excluded: Ints) -> Ranked:
        recent = history.recent(self.recent, positive=True)
        if len(recent) == 0 or self.matrix.shape[0] == 0:
            return Ranked.empty()
        liked = history.items[recent]
        weights = self.recency ** np.arange(len(recent)) * history.weight[recent]
        profile = sparse.csr_matrix(weights) @ self.matrix[liked]
        if profile.nnz == 0:
            return Ranked.empty()
        strongest = np.argsort(-profile.data, kind="stable")[:self.terms]
        terms, values = profile.indices[strongest], profile.data[strongest]
        values = values / np.linalg.norm(profile.data)
        scores = (sparse.csr_matrix(values) @ self._by_term[terms]).toarray().ravel()
        scores = scores.astype(np.float64)
        best = top_scored(scores, n, excluded)
        if len(best) == 0:
            return Ranked.empty()
        similarity = (self.matrix[best] @ self.matrix[liked].T).toarray()
        return Ranked(best, scores[best], recent[np.argmax(similarity, axis=1)])

    def save(self, directory: Path) -> None:
        sparse.save_npz(directory / "content.npz", self.matrix)
        (directory / "content.json").write_text(json.dumps(
            {"recent": self.recent, "recency": self.recency, "terms": self.terms}))

    @classmethod
    def load(cls, directory: Path) -> ContentSimilarity:
        model = cls(**json.loads((directory / "content.json").read_text()))
        model._set(sparse.csr_matrix(sparse.load_npz(directory / "content.npz"),
                                     dtype=np.float32))
        return model
