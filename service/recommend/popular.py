"""The popular list, for a user with nothing personal to go on: the tenant's most-used
items in tiers (recent, all time, then the catalog), avoid-facets still applied.

Counting a tier is a GROUP BY over the tenant's events (~50 ms at 60,000 events), so
each tier's ranking (item ids and counts, most used first) is kept per tenant in
`PopularCounts` and read again only when it may have changed:

- an event was added anywhere (the newest event id in the database moved: one index
  lookup per request; it errs towards counting again, never towards a stale list);
- the request's time passed an event's `ts`, or (recent tier) an event left the
  window (both bounds worked out when counting, from ix_events_tenant_ts);
- it is `MAX_AGE_SECONDS` old, which bounds what no stamp shows (a deleted user's
  events, gone with the user).

The items' own rows (title, vector version, category) are read fresh with each list,
so a changed or re-indexed item never shows stale. Only the first `rows` of a ranking
are kept; a list that needs more reads the rest from the database as before.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Literal

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache
from sqlalchemy import Engine, and_, func, select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.ingest.models import Event
from service.recommend.candidates import ActiveFacet, catalog_rows, item_vectors
from service.recommend.explain import popular_explanation
from service.recommend.lists import (
    Pick,
    Ranked,
    RecommendationRequest,
    rounded_columns,
    similarity_matrix,
)
from service.recommend.ranking import Matrix, RankingParams, fuse
from service.recommend.schemas import CandidateStatus, PopularTier
from service.recommend.trace import CandidateRow
from service.users.models import User
from service.vectors.store import VectorStore

POPULAR_WINDOW_DAYS = 30
# Where a popular list's items come from, tried in this order until it holds k.
POPULAR_TIERS: tuple[PopularTier, ...] = ("recent", "all_time", "catalog")

PopularRow = tuple[str, str, str, int]  # item id, title, vector version, events counted
CountedTier = Literal["recent", "all_time"]  # the tiers that count events

MAX_AGE_SECONDS = 300.0
CACHED_TENANTS = 256
CACHED_ROWS = 5_000  # of each tier's ranking; a list reaching further reads the database
FIRST_BATCH = 32  # catalog rows read for the first items of a ranking; doubles up to 512


def _popular_page(session: Session, tenant_id: int, at: datetime, since: datetime | None,
                  category: str | None, limit: int, offset: int) -> list[PopularRow]:
    """Items by their events in [since, at] (all up to `at` without `since`), most first.

    Reads events through ix_events_tenant_ts (tenant, then a range on ts).
    """
    events = func.count(Event.id)
    query = (
        select(Event.item_id, Item.title, Item.indexed_hash, events)
        .join(Item, and_(Item.tenant_id == Event.tenant_id, Item.item_id == Event.item_id))
        .where(Event.tenant_id == tenant_id, Event.ts <= at)
        .group_by(Event.item_id, Item.title, Item.indexed_hash)
        .order_by(events.desc(), Event.item_id)
        .limit(limit).offset(offset)
    )
    if since is not None:
        query = query.where(Event.ts >= since)
    if category is not None:
        query = query.where(Item.category == category)
    return [(str(item_id), str(title), version or "", int(count))
            for item_id, title, version, count in session.execute(query)]


@dataclass(frozen=True)
class TierRanking:
    """A tier's items by events counted as of `at`, most first (ties by item id), as
    the database ordered them; `complete` unless cut at `rows`."""

    ranking: tuple[tuple[str, int], ...]
    complete: bool
    newest_event: int  # the database's newest event id when counted
    at: datetime
    until: datetime | None  # the ranking holds for request times in [at, until)
    counted_at: float  # time.monotonic()


_NEWEST_EVENT = select(func.max(Event.id))


def _next_ts(session: Session, tenant_id: int, after: datetime, *, inclusive: bool
             ) -> datetime | None:
    """The tenant's first event time after `after` (or at it), through ix_events_tenant_ts."""
    bound = Event.ts >= after if inclusive else Event.ts > after
    found: datetime | None = session.scalar(
        select(func.min(Event.ts)).where(Event.tenant_id == tenant_id, bound))
    return found


def count_tier(session: Session, tenant_id: int, tier: CountedTier, at: datetime,
               rows: int) -> TierRanking:
    """The tier's ranking as `_popular_page` orders it (without the catalog join: an
    event's item is in the catalog, and the rows are read with each list anyway)."""
    newest = int(session.scalar(_NEWEST_EVENT) or 0)
    since = at - timedelta(days=POPULAR_WINDOW_DAYS) if tier == "recent" else None
    events = func.count(Event.id)
    query = (select(Event.item_id, events)
             .where(Event.tenant_id == tenant_id, Event.item_id.is_not(None), Event.ts <= at)
             .group_by(Event.item_id).order_by(events.desc(), Event.item_id)
             .limit(rows + 1))
    if since is not None:
        query = query.where(Event.ts >= since)
    found = [(str(item_id), int(count)) for item_id, count in session.execute(query)]
    # Valid until an event's time is reached, or (recent) the oldest counted one leaves.
    bounds = [_next_ts(session, tenant_id, at, inclusive=False)]
    if since is not None:
        oldest = _next_ts(session, tenant_id, since, inclusive=True)
        bounds.append(oldest + timedelta(days=POPULAR_WINDOW_DAYS) if oldest else None)
    until = min((b for b in bounds if b is not None), default=None)
    return TierRanking(tuple(found[:rows]), len(found) <= rows, newest, at, until,
                       time.monotonic())


class PopularCounts:
    """Each tenant's tier rankings, for one database (see the module notes); thread-safe,
    at most `tenants` x 2 rankings of at most `rows` items each."""

    def __init__(self, tenants: int = CACHED_TENANTS, rows: int = CACHED_ROWS,
                 max_age: float = MAX_AGE_SECONDS) -> None:
        self.rows = rows
        self.max_age = max_age
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self._kept: LRUCache[tuple[int, CountedTier], TierRanking] = LRUCache(2 * tenants)

    def __len__(self) -> int:
        return len(self._kept)

    def ranking(self, session: Session, tenant_id: int, tier: CountedTier,
                at: datetime) -> TierRanking:
        with self._lock:
            kept = self._kept.get((tenant_id, tier))
        if kept is not None and kept.at <= at and (kept.until is None or at < kept.until) \
                and time.monotonic() - kept.counted_at < self.max_age \
                and int(session.scalar(_NEWEST_EVENT) or 0) == kept.newest_event:
            return kept
        counted = count_tier(session, tenant_id, tier, at, self.rows)
        with self._lock:
            self._kept[(tenant_id, tier)] = counted
        return counted


# One per database: two apps in one process (the tests) must not share counts.
_counts: weakref.WeakKeyDictionary[Engine, PopularCounts] = weakref.WeakKeyDictionary()
_counts_lock = threading.Lock()


def popular_counts(session: Session) -> PopularCounts:
    """The `PopularCounts` of the session's database."""
    engine = session.get_bind().engine
    with _counts_lock:
        found = _counts.get(engine)
        if found is None:
            found = _counts[engine] = PopularCounts()
        return found


def _ranked_rows(session: Session, tenant_id: int, at: datetime, since: datetime | None,
                 category: str | None, ranked: TierRanking) -> Iterator[PopularRow]:
    """`_popular_page`'s rows, one after another: the kept ranking joined with the
    catalog's current rows, then (past a cut ranking) the database's pages."""
    taken, start, batch = 0, 0, FIRST_BATCH
    while start < len(ranked.ranking):
        part = ranked.ranking[start:start + batch]
        start, batch = start + len(part), min(2 * batch, 512)
        rows = catalog_rows(session, tenant_id, [item_id for item_id, _ in part])
        for item_id, count in part:
            row = rows.get(item_id)
            if row is not None and (category is None or row.category == category):
                taken += 1
                yield item_id, row.title, row.version, count
    if ranked.complete:
        return
    while True:
        page = _popular_page(session, tenant_id, at, since, category, 512, taken)
        yield from page
        taken += len(page)
        if len(page) < 512:
            return


class _Pages:
    """`limit` rows from `offset` of a row stream read only as far as asked."""

    def __init__(self, rows: Iterator[PopularRow]) -> None:
        self.rows = rows
        self.read: list[PopularRow] = []

    def page(self, limit: int, offset: int) -> list[PopularRow]:
        wanted = offset + limit - len(self.read)
        if wanted > 0:
            self.read.extend(islice(self.rows, wanted))
        return self.read[offset:offset + limit]


def _catalog_page(session: Session, tenant_id: int, category: str | None, limit: int,
                  offset: int) -> list[PopularRow]:
    """The catalog by item id: a fixed order that favours nothing."""
    query = (select(Item.item_id, Item.title, Item.indexed_hash)
             .where(Item.tenant_id == tenant_id)
             .order_by(Item.item_id).limit(limit).offset(offset))
    if category is not None:
        query = query.where(Item.category == category)
    return [(item_id, title, version or "", 0)
            for item_id, title, version in session.execute(query)]


def _near_avoids(vectors: VectorStore, tenant_id: int, avoids: Sequence[ActiveFacet],
                 rows: Sequence[PopularRow], params: RankingParams,
                 ) -> tuple[Matrix, npt.NDArray[np.bool_]]:
    """Avoid-facets x rows similarities, and which rows an avoid-facet drops."""
    dropped = np.zeros(len(rows), dtype=np.bool_)
    avoid_sims: Matrix = np.zeros((len(avoids), len(rows)), dtype=np.float32)
    if avoids and rows:
        found = item_vectors(vectors, tenant_id, {r[0]: r[2] for r in rows})
        dim = len(avoids[0].vector)
        items = np.stack([found.get(r[0], np.zeros(dim, dtype=np.float32)) for r in rows])
        avoid_sims = similarity_matrix(avoids, items)
        dropped = fuse([], np.zeros((0, len(rows)), dtype=np.float32),
                       [f.strength for f in avoids], avoid_sims, params).dropped
    return avoid_sims, dropped


def rank_popular(
    session: Session, user: User, vectors: VectorStore, avoids: Sequence[ActiveFacet],
    consumed: set[str], at: datetime, request: RecommendationRequest, params: RankingParams,
    counts: PopularCounts | None = None,
) -> Ranked:
    """k items the user has not used, from three tiers in turn, each pick labelled by its tier:
    the tenant's most-used items of the last 30 days, then of all time, then the rest of
    the catalog by item id. A heavy user or a quiet tenant still gets a full list, and
    the list never claims more popularity than the item has.

    Avoid-facets still apply (items squarely on one are dropped): a stated dislike
    holds even before there is anything to like. `counts` keeps the tiers' rankings
    (the database's own `popular_counts` without one).
    """
    window = at - timedelta(days=POPULAR_WINDOW_DAYS)
    counts = counts or popular_counts(session)
    pages: dict[PopularTier, _Pages] = {}

    def fetch(tier: PopularTier, limit: int, offset: int) -> list[PopularRow]:
        if tier == "catalog":
            return _catalog_page(session, user.tenant_id, request.category, limit, offset)
        if tier not in pages:
            ranked = counts.ranking(session, user.tenant_id, tier, at)
            pages[tier] = _Pages(_ranked_rows(
                session, user.tenant_id, at, window if tier == "recent" else None,
                request.category, ranked))
        return pages[tier].page(limit, offset)

    seen: set[str] = set()  # every item a tier has offered, so later tiers skip it
    picks: list[Pick] = []
    candidates: list[CandidateRow] = []
    runners_up = 0  # items not needed once the list was full; the trace keeps 2k of them
    consumed_seen = 0
    for tier in POPULAR_TIERS:
        offset = 0
        while len(picks) < request.k:
            # Enough rows for the list even when consumed items and earlier tiers' items recur.
            size = len(consumed) + len(seen) + 3 * (request.k - len(picks))
            page = fetch(tier, size, offset)
            offset += len(page)
            rows = [r for r in page if r[0] not in seen]
            seen.update(r[0] for r in rows)
            consumed_seen += sum(1 for r in rows if r[0] in consumed)
            rows = [r for r in rows if r[0] not in consumed]
            avoid_sims, dropped = _near_avoids(vectors, user.tenant_id, avoids, rows, params)
            sims = rounded_columns(avoid_sims)
            for j, (item_id, title, _, count) in enumerate(rows):
                full = len(picks) == request.k
                if full and runners_up == 2 * request.k:
                    break
                status: CandidateStatus = ("dropped_avoid" if dropped[j] else "not_selected" if full
                                  else "returned")
                if status == "returned":
                    picks.append(Pick(
                        item_id=item_id, title=title, score=float(count), because=None,
                        explanation=popular_explanation(tier, count, POPULAR_WINDOW_DAYS),
                        popular_tier=tier))
                runners_up += status == "not_selected"
                candidates.append({
                    "item_id": item_id, "title": title, "sims": sims[j],
                    "base_score": float(count), "avoid_penalty": 0.0, "score": float(count),
                    "best_facet": None, "status": status, "popular_events": count,
                    "popular_tier": tier})
            if len(page) < size:
                break
    excluded = {"consumed": consumed_seen,
                "dropped_avoid": sum(1 for c in candidates if c["status"] == "dropped_avoid")}
    return Ranked("popular", picks, candidates, excluded)
