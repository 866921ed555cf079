"""The baselines of DESIGN.md §7, each a `Recommender` with default parameters.

`BASELINES` maps a stable name (used in reports and on the command line) to a
factory, so every run gets a fresh, unfitted model.
"""

from __future__ import annotations

from collections.abc import Callable

from evals.baselines.ease import EASE
from evals.baselines.embedding import MeanEmbedding
from evals.baselines.gru import GRURecommender
from evals.baselines.itemknn import ItemKNN
from evals.baselines.markov import Markov
from evals.baselines.popular import MostPopular, RandomRecommender, RecentPopular
from evals.baselines.sasrec import SASRecRecommender
from evals.baselines.tfidf import TfidfContent
from evals.types import Recommender

BASELINES: dict[str, Callable[[], Recommender]] = {
    "random": RandomRecommender,
    "most-popular": MostPopular,
    "recent-popular": RecentPopular,
    "item-knn": ItemKNN,
    "markov": Markov,
    "tfidf": TfidfContent,
    "mean-embedding": MeanEmbedding,
    "gru": GRURecommender,
    "ease": EASE,
    "sasrec": SASRecRecommender,
}

__all__ = [
    "BASELINES",
    "EASE",
    "GRURecommender",
    "ItemKNN",
    "Markov",
    "MeanEmbedding",
    "MostPopular",
    "RandomRecommender",
    "RecentPopular",
    "SASRecRecommender",
    "TfidfContent",
]
