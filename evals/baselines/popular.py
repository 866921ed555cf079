"""Reference points with no personalisation: random, all-time and recent popularity.

A model that cannot beat these on the same split has learned nothing about users.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from evals.baselines.catalog import Catalog, chronological, fitted
from evals.types import Interaction, ItemInfo

DAY = 86_400


class RandomRecommender:
    """A uniformly random ranking: the floor every metric is read against.

    The generator is seeded from (seed, user), so a user's list does not depend on the
    order in which users are asked, and two runs with one seed agree exactly.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._catalog: Catalog | None = None

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        self._catalog = Catalog(train, items)

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        catalog = fitted(self._catalog)
        rng = np.random.default_rng([self.seed, zlib.crc32(user.encode())])
        return catalog.top_k(rng.random(len(catalog)), k, exclude)


class MostPopular:
    """Items by how many training interactions they have.

    `min_rating` counts only positives (rating >= min_rating, or no rating); the default
    counts every interaction, the usual MostPop on explicit-rating data, because being
    rated at all is already a sign of being watched.
    """

    name = "most-popular"

    def __init__(self, min_rating: float | None = None) -> None:
        self.min_rating = min_rating
        self._catalog: Catalog | None = None
        self._counts: np.ndarray | None = None

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        catalog = self._catalog = Catalog(train, items)
        if self.min_rating is None:
            counts = catalog.popularity.copy()
        else:
            counts = np.zeros(len(catalog))
            for x in train:
                if x.rating is None or x.rating >= self.min_rating:
                    counts[catalog.index[x.item]] += 1
        counts[counts == 0] = -np.inf  # never counted: reached through the fill only
        self._counts = counts

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        return fitted(self._catalog).top_k(self._counts, k, exclude)


class RecentPopular:
    """Popularity within the `window_days` before a reference time.

    With `anchor="user"` (the default) the window ends at the user's last history
    timestamp, so a user whose history stops in 1998 gets 1998's hits, and nothing
    that happened after their history (which a leave-last-out train still holds) leaks
    in. `anchor="train-end"` is the simple global variant: the window ends at the last
    training timestamp for everyone, which suits a global-time split. Users with no
    history fall back to the train end. A window with fewer than k items is filled from
    all-time popularity.
    """

    name = "recent-popular"

    def __init__(self, window_days: float = 30,
                 anchor: Literal["user", "train-end"] = "user") -> None:
        self.window = window_days * DAY
        self.anchor = anchor
        self._catalog: Catalog | None = None
        self._ts = np.empty(0, dtype=np.int64)
        self._items = np.empty(0, dtype=np.int64)

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        catalog = self._catalog = Catalog(train, items)
        ordered = chronological(train)
        self._ts = np.array([x.ts for x in ordered], dtype=np.int64)
        self._items = np.array([catalog.index[x.item] for x in ordered], dtype=np.int64)

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        catalog = fitted(self._catalog)
        if not len(self._ts):
            return catalog.top_k(None, k, exclude)
        end = int(self._ts[-1])
        if self.anchor == "user" and history:
            end = max(x.ts for x in history)
        lo = np.searchsorted(self._ts, end - self.window, side="right")
        hi = np.searchsorted(self._ts, end, side="right")
        counts = np.bincount(self._items[lo:hi], minlength=len(catalog)).astype(np.float64)
        counts[counts == 0] = -np.inf
        return catalog.top_k(counts, k, exclude)

