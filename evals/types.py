"""The shapes every part of the harness shares: data, splits, recommenders.

Loaders produce a `Dataset`; a protocol turns it into a `Split`; every model,
baselines and ours alike, is a `Recommender` fitted on the same training
interactions and asked for a full-catalog ranking per test user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# The data shapes belong to the service (the demo loads the same data sets).
from service.datasets.types import Dataset, Interaction, ItemInfo

__all__ = ["Dataset", "Interaction", "ItemInfo", "Recommender", "Split"]


@dataclass
class Split:
    """Training interactions and, per test user, the held-out positive targets.

    `train` holds everything a model may learn from (negative ratings included, so
    ours can form avoid facets). `history[user]` is that user's part of `train`,
    time-ordered. Targets are only positives (rating >= threshold or no rating).
    """

    protocol: str
    train: list[Interaction]
    history: dict[str, list[Interaction]]
    targets: dict[str, list[str]]
    cutoff: dict[str, int] = field(default_factory=dict)  # per test user: ts of first target


class Recommender(Protocol):
    name: str

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None: ...

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        """The top k item ids over the whole catalog, none of them in `exclude`."""
        ...
