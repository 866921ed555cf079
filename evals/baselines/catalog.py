"""The item index and the one ranking routine every baseline shares.

Keeping the ranking rules in one place is what makes the baselines comparable: the
same catalog, the same tie-break (item id), the same exclusion and the same
popularity fill when a model has fewer than k scored candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from evals.types import Interaction, ItemInfo


def chronological(interactions: Iterable[Interaction]) -> list[Interaction]:
    """Sort by (ts, seq): callers pass time-ordered lists, but a model must not rely on it."""
    return sorted(interactions, key=lambda x: (x.ts, x.seq))


class Catalog:
    """Every item a model may recommend, indexed in item-id order.

    Index order equals id order, so a stable sort on scores breaks ties by id for free.
    Items seen in `train` but missing from `items` are still part of the catalog: a
    model must be able to recommend anything the protocol could hold out.
    """

    def __init__(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        self.ids: list[str] = sorted(set(items) | {x.item for x in train})
        self.index: dict[str, int] = {item: i for i, item in enumerate(self.ids)}
        self.popularity: np.ndarray = np.bincount(
            np.fromiter((self.index[x.item] for x in train), dtype=np.int64, count=len(train)),
            minlength=len(self.ids),
        ).astype(np.float64)
        self._popular_order = np.argsort(-self.popularity, kind="stable")

    def __len__(self) -> int:
        return len(self.ids)

    def indices(self, item_ids: Iterable[str]) -> list[int]:
        """Positions of the known items, in the given order; unknown ids are skipped."""
        return [self.index[item] for item in item_ids if item in self.index]

    def recent_indices(self, history: Sequence[Interaction], limit: int,
                       distinct: bool = True) -> list[int]:
        """The user's last `limit` known items (`distinct`: repeats count once), oldest first.

        Relies on `history` being time-ordered, as `Split.history` promises, so a long
        history costs only its tail.
        """
        seen: set[int] = set()
        recent: list[int] = []
        for x in reversed(history):
            i = self.index.get(x.item)
            if i is None or (distinct and i in seen):
                continue
            seen.add(i)
            recent.append(i)
            if len(recent) == limit:
                break
        return recent[::-1]

    def top_k(self, scores: np.ndarray | None, k: int, exclude: set[str]) -> list[str]:
        """Best k ids by score (finite entries only), ties by id, then popularity fill.

        Entries that are -inf or NaN count as "no opinion": they are only reached through
        the popularity fill, like items nobody scored.
        """
        if k <= 0 or not self.ids:
            return []
        excluded = np.zeros(len(self.ids), dtype=bool)
        excluded[self.indices(exclude)] = True
        chosen = np.empty(0, dtype=np.int64)
        if scores is not None:
            candidates = np.flatnonzero(np.isfinite(scores) & ~excluded)
            values = scores[candidates]
            if len(candidates) > k:
                # Keep everything tied with the k-th best so the id tie-break stays exact.
                kth = np.partition(values, len(values) - k)[len(values) - k]
                keep = values >= kth
                candidates, values = candidates[keep], values[keep]
            chosen = candidates[np.argsort(-values, kind="stable")][:k]
        if len(chosen) < k:
            taken = excluded
            taken[chosen] = True
            fill = self._popular_order[~taken[self._popular_order]][: k - len(chosen)]
            chosen = np.concatenate([chosen, fill])
        return [self.ids[i] for i in chosen]


def fitted(catalog: Catalog | None) -> Catalog:
    """Fail loudly when `recommend` comes before `fit` instead of recommending nothing."""
    if catalog is None:
        raise RuntimeError("call fit() before recommend()")
    return catalog
