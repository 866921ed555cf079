"""A tenant's item events as one `InteractionLog`, and the array helpers every model shares.

The log is read once (from the database or from plain rows) and every model's `fit`
reads the same arrays, so the models agree on item indices and on event order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.ingest.models import Event
from service.training.contract import InteractionLog, UserEvent
from service.users.models import User

# An event at least this positive is something the user liked (a view is 0.5).
POSITIVE = 0.5
# A history event whose contribution to a summed score (`neighbour_scores`) is at least
# this share of the largest contribution is one of the item's `vias`: a real reason for
# it, not a rounding error. At most `MAX_VIAS` are kept (a reason cites a few, not all).
VIA_SHARE = 0.5
MAX_VIAS = 3

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

# (user id, item id, unix seconds, weight, event id)
Row = tuple[str, str, float, float, str]


def event_weight(type_: str, value: float | None, rating_max: float) -> float:
    """How positive an event is, in [0, 1]; 0 for a low rating, a dislike or a skip.

    A rating of 70 % of the scale or more counts as liked (0.8 at 70 %, 1.0 at the top),
    one at half the scale or less as disliked, and the narrow band between as lukewarm.
    """
    if type_ == "rating":
        if value is None or rating_max <= 0:
            return POSITIVE
        share = value / rating_max
        if share >= 0.7:
            return float(min(1.0, 0.8 + 0.2 * (share - 0.7) / 0.3))
        if share <= 0.5:
            return 0.0
        return 0.25
    if type_ in ("like", "purchase"):
        return 1.0
    if type_ in ("dislike", "skip"):
        return 0.0
    # view, click, and a search or post that names an item
    return POSITIVE


def log_from_rows(rows: Iterable[Row]) -> InteractionLog:
    """A log from `(user_id, item_id, ts_seconds, weight, event_id)` rows.

    Sorted by time, ties kept in input order; users and items are indexed in id order, so
    the same rows always give the same indices whatever order they come in.
    """
    users_raw: list[str] = []
    items_raw: list[str] = []
    ts_raw: list[float] = []
    weight_raw: list[float] = []
    event_raw: list[str] = []
    for user, item, ts, weight, event_id in rows:
        users_raw.append(user)
        items_raw.append(item)
        ts_raw.append(ts)
        weight_raw.append(weight)
        event_raw.append(event_id)
    return _log(users_raw, items_raw, np.asarray(ts_raw, dtype=np.float64),
                np.asarray(weight_raw, dtype=np.float32), event_raw)


def _log(users_raw: list[str], items_raw: list[str], ts: Floats,
         weight: npt.NDArray[np.float32], event_ids: list[str]) -> InteractionLog:
    order = np.argsort(ts, kind="stable")
    user_ids = sorted(set(users_raw))
    item_ids = sorted(set(items_raw))
    user_index = {u: i for i, u in enumerate(user_ids)}
    item_index = {t: i for i, t in enumerate(item_ids)}
    users = np.fromiter((user_index[u] for u in users_raw), dtype=np.int32,
                        count=len(users_raw))
    items = np.fromiter((item_index[t] for t in items_raw), dtype=np.int32,
                        count=len(items_raw))
    return InteractionLog(
        user_ids=user_ids, item_ids=item_ids, users=users[order], items=items[order],
        ts=ts[order], weight=np.clip(weight[order], 0.0, 1.0).astype(np.float32),
        event_ids=[event_ids[i] for i in order.tolist()])


def log_from_database(session: Session, tenant_id: int, rating_max: float) -> InteractionLog:
    """The tenant's events that name an item, in one streamed select of the needed columns."""
    query = (select(User.user_id, Event.item_id, Event.ts, Event.type, Event.value,
                    Event.event_id)
             .join(User, User.id == Event.user_pk)
             .where(Event.tenant_id == tenant_id, Event.item_id.is_not(None))
             .order_by(Event.ts, Event.id))
    users: list[str] = []
    items: list[str] = []
    ts: list[float] = []
    weight: list[float] = []
    event_ids: list[str] = []
    for user, item, when, type_, value, event_id in session.execute(
            query.execution_options(yield_per=5000)):
        users.append(user)
        items.append(str(item))
        ts.append(when.timestamp() if isinstance(when, datetime) else float(when))
        weight.append(event_weight(type_, value, rating_max))
        event_ids.append(event_id)
    return _log(users, items, np.asarray(ts, dtype=np.float64),
                np.asarray(weight, dtype=np.float32), event_ids)


def item_texts_from_database(session: Session, tenant_id: int) -> dict[str, str]:
    """What the content model reads about each catalog item: title, tags, category, text."""
    query = (select(Item.item_id, Item.title, Item.tags, Item.category, Item.description)
             .where(Item.tenant_id == tenant_id))
    texts: dict[str, str] = {}
    for item_id, title, tags, category, description in session.execute(
            query.execution_options(yield_per=5000)):
        parts = [title]
        if tags:
            parts.append("Tags: " + ", ".join(str(t) for t in tags))
        if category:
            parts.append(f"Category: {category}")
        if description:
            parts.append(description)
        texts[item_id] = ". ".join(parts)
    return texts


def user_runs(log: InteractionLog) -> tuple[Ints, Ints]:
    """(order, starts): `order` lists event positions grouped by user, each user's in time
    order; user u's events are `order[starts[u]:starts[u + 1]]`."""
    order = np.argsort(log.users, kind="stable").astype(np.int64)
    counts = np.bincount(log.users, minlength=len(log.user_ids))
    starts = np.zeros(len(log.user_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return order, starts


def subset(log: InteractionLog, keep: npt.NDArray[np.bool_]) -> InteractionLog:
    """The log with only the events where `keep` is true (indices unchanged)."""
    where = np.flatnonzero(keep)
    return InteractionLog(
        user_ids=log.user_ids, item_ids=log.item_ids, users=log.users[where],
        items=log.items[where], ts=log.ts[where], weight=log.weight[where],
        event_ids=[log.event_ids[i] for i in where.tolist()])


# The time split every training step shares (held-out metrics, the ranker): sampled users'
# last positive events are held out with everything they did after the first of them.
SPLIT_MIN_POSITIVES = 5  # positive events a user needs to be sampled (4 to learn from, 1 held out)
SPLIT_MAX_USERS = 2000
SPLIT_HOLDOUTS = 3  # held-out positive events per sampled user, at most (the ranker's queries)


def split_last_positives(log: InteractionLog, seed: int, holdouts: int,
                         max_users: int = SPLIT_MAX_USERS,
                         min_positives: int = SPLIT_MIN_POSITIVES
                         ) -> tuple[npt.NDArray[np.bool_],
                                    dict[int, list[tuple[list[int], int]]]]:
    """For up to `max_users` seeded users with at least `min_positives` positive events,
    up to `holdouts` of their last positive events held out (one only for users with
    fewer than twice `min_positives`): (rows kept for fitting, {user: [(history rows,
    held-out row)] oldest first}), each history everything the user did before that
    held-out event. The fit never sees a held-out event or anything after the first one;
    the same users are sampled whatever `holdouts` is, and the same log and seed always
    give the same split, so the steps of one training can share one fit."""
    if holdouts < 1:
        raise ValueError("holdouts must be at least 1")
    order, starts = user_runs(log)
    weights = log.weight
    usable = []
    for u in range(len(starts) - 1):
        rows = order[starts[u]:starts[u + 1]]
        if int((weights[rows] >= POSITIVE).sum()) >= min_positives:
            usable.append(u)
    rng = np.random.default_rng(seed)
    if len(usable) > max_users:
        usable = sorted(rng.choice(usable, size=max_users, replace=False).tolist())
    keep = np.ones(len(log), dtype=np.bool_)
    held: dict[int, list[tuple[list[int], int]]] = {}
    for u in usable:
        rows = order[starts[u]:starts[u + 1]]
        positives = np.flatnonzero(weights[rows] >= POSITIVE)
        # A short history cannot spare more than one event: the fit would lose too much.
        take = (min(holdouts, len(positives) - min_positives + 1)
                if len(positives) >= 2 * min_positives else 1)
        tail = positives[-take:].tolist()
        keep[rows[tail[0]:]] = False
        held[u] = [(rows[:t].tolist(), int(rows[t])) for t in tail]
    return keep, held


def history_of(log: InteractionLog, positions: Sequence[int]) -> list[UserEvent]:
    """The events at these log positions as a history (the caller passes them in order)."""
    return [UserEvent(item_id=log.item_ids[int(log.items[p])], ts=float(log.ts[p]),
                      weight=float(log.weight[p]), event_id=log.event_ids[p])
            for p in positions]


def top_scored(scores: Floats, n: int, excluded: Ints) -> Ints:
    """Indices of the n best finite, positive scores, best first, ties by index; scores
    at `excluded` positions are ignored (the array is modified)."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    scores[excluded] = -np.inf
    if len(scores) > n:
        candidates = np.argpartition(-scores, n - 1)[:n]
    else:
        candidates = np.arange(len(scores))
    candidates = candidates[np.isfinite(scores[candidates]) & (scores[candidates] > 0)]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order].astype(np.int64)


def top_sparse(items: Ints, scores: Floats, n: int, excluded: Ints) -> Ints:
    """Positions into (items, scores) of the n best, for sparse candidate lists."""
    keep = ~np.isin(items, excluded) & (scores > 0)
    where = np.flatnonzero(keep)
    order = np.lexsort((items[where], -scores[where]))
    return where[order[:n]].astype(np.int64)


def indices_of(item_index: Mapping[str, int], item_ids: Iterable[str]) -> Ints:
    """The catalog indices of the ids the index knows, in their order (others skipped)."""
    found = np.fromiter(map(item_index.get, item_ids, repeat(-1)), dtype=np.int64)
    return found[found >= 0]


def indices_of_list(item_index: Mapping[str, int], item_ids: Sequence[str]) -> Ints:
    """The catalog index of each id in order, -1 for an id the index does not know
    (`indices_of` skips those instead)."""
    return np.fromiter(map(item_index.get, item_ids, repeat(-1)), dtype=np.int64,
                       count=len(item_ids))


def top_k_rows(matrix_rows: Ints, matrix_cols: Ints, values: Floats, shape: int, k: int
               ) -> tuple[Ints, Ints, Floats]:
    """Keep the k largest values of each row of a COO-style triple (summed duplicates)."""
    order = np.lexsort((matrix_cols, -values, matrix_rows))
    rows, cols, vals = matrix_rows[order], matrix_cols[order], values[order]
    counts = np.bincount(rows, minlength=shape)
    starts = np.zeros(shape + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    return rows[keep], cols[keep], vals[keep]


@dataclass(frozen=True)
class History:
    """A user's history as catalog indices (-1: an item the models do not know)."""

    items: Ints
    ts: Floats
    weight: Floats

    @classmethod
    def of(cls, events: Sequence[UserEvent], item_index: Mapping[str, int]) -> History:
        return cls(
            items=np.fromiter((item_index.get(e.item_id, -1) for e in events), dtype=np.int64,
                              count=len(events)),
            ts=np.fromiter((e.ts for e in events), dtype=np.float64, count=len(events)),
            weight=np.fromiter((e.weight for e in events), dtype=np.float64,
                               count=len(events)))

    def recent(self, limit: int, positive: bool) -> Ints:
        """Positions of the last `limit` distinct known items (only liked ones if
        `positive`), newest first; a repeated item counts at its latest event."""
        ok = self.items >= 0
        if positive:
            ok &= self.weight >= POSITIVE
        where = np.flatnonzero(ok)[::-1]
        if len(where) == 0:
            return where.astype(np.int64)
        _, first = np.unique(self.items[where], return_index=True)
        return where[np.sort(first)][:limit].astype(np.int64)


@dataclass(frozen=True)
class Ranked:
    """One source's top items: catalog indices, scores (best first) and, per item, the
    history position that led to it (-1 when the source cannot say).

    `vias`, when the source sums several history events, holds per item the positions
    of the substantial contributors, largest first (`via` is its first column), padded
    with -1 to `MAX_VIAS` columns; None when `via` is the only one."""

    items: Ints
    scores: Floats
    via: Ints
    vias: Ints | None = None

    @classmethod
    def empty(cls) -> Ranked:
        return cls(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=np.int64))

    def via_columns(self) -> Ints:
        """Per item, its vias as a (items, columns) array padded with -1."""
        return self.vias if self.vias is not None else self.via[:, np.newaxis]


def row_entries(matrix: sparse.csr_matrix, rows: Ints) -> tuple[Ints, Ints]:
    """Where the stored entries of `rows` sit in `matrix.indices` and `matrix.data`, row
    after row, and how many each row has."""
    indptr = matrix.indptr
    starts = indptr[rows].astype(np.int64)
    lengths = (indptr[rows + 1] - indptr[rows]).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), lengths
    shift = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return shift + np.arange(total), lengths


def neighbour_scores(matrix: sparse.csr_matrix, rows: Ints, row_weights: Floats,
                     row_via: Ints, n: int, excluded: Ints) -> Ranked:
    """Sum the weighted sparse rows `rows`; each item's `vias` are the rows (history
    positions) whose contribution is at least `VIA_SHARE` of its largest, largest first
    (ties to the earlier row in `rows`), at most `MAX_VIAS`; `via` is the largest."""
    at, lengths = row_entries(matrix, rows)
    total = len(at)
    if total == 0:
        return Ranked.empty()
    cols = matrix.indices[at].astype(np.int64)
    contrib = matrix.data[at] * np.repeat(row_weights, lengths)
    source = np.repeat(row_via, lengths)
    items, inverse = np.unique(cols, return_inverse=True)
    scores: Floats = np.bincount(inverse, weights=contrib, minlength=len(items)).astype(np.float64)
    best = top_sparse(items, scores, n, excluded)
    # Each item's contributions, largest first: item g's run is order[starts[g]:ends[g]].
    order = np.lexsort((-contrib, inverse))
    starts = np.concatenate(([0], np.flatnonzero(np.diff(inverse[order])) + 1))
    ends = np.append(starts[1:], total)
    # Only the returned items' first MAX_VIAS contributions are read.
    slots = starts[best][:, np.newaxis] + np.arange(MAX_VIAS)
    inside = slots < ends[best][:, np.newaxis]
    ranked_at = order[np.minimum(slots, total - 1)]
    share = contrib[ranked_at]
    substantial = inside & (share >= VIA_SHARE * share[:, :1])
    vias = np.where(substantial, source[ranked_at], -1).astype(np.int64)
    return Ranked(items[best], scores[best], vias[:, 0].copy(), vias)


def dense_ranked(scores: Floats, n: int, excluded: Ints) -> Ranked:
    best = top_scored(scores, n, excluded)
    return Ranked(best, scores[best], np.full(len(best), -1, dtype=np.int64))
