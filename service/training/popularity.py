"""Popularity, all-time and recent: the fallback every user gets and a ranker feature.

Counts the tenant's positive-ish events (weight above 0: not dislikes, skips or low
ratings). "Recent" is the 30 days before the log's end, or before `now` when that is
earlier (a replay must not count the future); each is log-scaled to [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.training.contract import InteractionLog
from service.training.data import Floats, Ints, Ranked

DAY = 86_400.0


@dataclass(frozen=True)
class _Counts:
    recent: Floats
    all_time: Floats
    order: Ints  # catalog by the blended popular score, best first (ties by index)
    blended: Floats


class Popularity:
    name = "popular"

    def __init__(self, days: float = 30.0, recent_share: float = 0.7) -> None:
        self.days = days
        self.recent_share = recent_share
        self.ts = np.empty(0, dtype=np.float64)  # positive-ish events, time-sorted
        self.items = np.empty(0, dtype=np.int64)
        self.n_items = 0
        self._latest: _Counts | None = None
        self._cached: tuple[float, _Counts] | None = None

    @property
    def end(self) -> float:
        return float(self.ts[-1]) if len(self.ts) else 0.0

    def fit(self, log: InteractionLog, n_items: int) -> Popularity:
        keep = log.weight > 0
        self._set(log.ts[keep].astype(np.float64), log.items[keep].astype(np.int64), n_items)
        return self

    def _set(self, ts: Floats, items: Ints, n_items: int) -> None:
        order = np.argsort(ts, kind="stable")
        self.ts, self.items, self.n_items = ts[order], items[order], n_items
        self._cached = None
        self._latest = self._count(self.end)

    def _count(self, end: float) -> _Counts:
        hi = int(np.searchsorted(self.ts, end, side="right"))
        lo = int(np.searchsorted(self.ts, end - self.days * DAY, side="left"))
        all_time = _scaled(np.bincount(self.items[:hi], minlength=self.n_items))
        recent = _scaled(np.bincount(self.items[lo:hi], minlength=self.n_items))
        blended = self.recent_share * recent + (1 - self.recent_share) * all_time
        order = np.lexsort((np.arange(self.n_items), -blended))
        return _Counts(recent, all_time, order[blended[order] > 0].astype(np.int64), blended)

    def counts(self, now: float) -> _Counts:
        """Counts as of `now`; later than the log's end means at its end. An earlier `now`
        is counted at the hour (cached), so a replay asks the same hour many times cheaply."""
        if now >= self.end and self._latest is not None:
            return self._latest
        hour = float(np.floor(now / 3600.0) * 3600.0)
        if self._cached is None or self._cached[0] != hour:
            self._cached = (hour, self._count(hour))
        return self._cached[1]

    def scores(self, items: Ints, now: float) -> tuple[Floats, Floats]:
        """(recent, all-time) of catalog indices; -1 (unknown item) is 0."""
        counts = self.counts(now)
        known = items >= 0
        recent = np.zeros(len(items))
        all_time = np.zeros(len(items))
        recent[known] = counts.recent[items[known]]
        all_time[known] = counts.all_time[items[known]]
        return recent, all_time

    def recommend(self, n: int, excluded: Ints, now: float) -> Ranked:
        counts = self.counts(now)
        head = counts.order[:n + len(excluded)]
        head = head[~np.isin(head, excluded)][:n]
        return Ranked(head, counts.blended[head], np.full(len(head), -1, dtype=np.int64))

    def save(self, directory: Path) -> None:
        np.savez(directory / "popularity.npz", ts=self.ts, items=self.items)
        (directory / "popularity.json").write_text(json.dumps(
            {"days": self.days, "recent_share": self.recent_share, "n_items": self.n_items}))

    @classmethod
    def load(cls, directory: Path) -> Popularity:
        config = json.loads((directory / "popularity.json").read_text())
        model = cls(days=config["days"], recent_share=config["recent_share"])
        with np.load(directory / "popularity.npz", allow_pickle=False) as arrays:
            model._set(arrays["ts"], arrays["items"], int(config["n_items"]))
        return model


def _scaled(counts: Ints) -> Floats:
    top = counts.max() if len(counts) else 0
    if top <= 0:
        return np.zeros(len(counts))
    return np.asarray(np.log1p(counts) / np.log1p(top), dtype=np.float64)
