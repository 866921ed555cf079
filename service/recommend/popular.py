"""The popular list, for a user with nothing personal to go on: the tenant's most-used
items in tiers (recent, all time, then the catalog), avoid-facets still applied."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.ingest.models import Event
from service.recommend.candidates import ActiveFacet, item_vectors
from service.recommend.explain import popular_explanation
from service.recommend.lists import (
    Pick,
    Ranked,
    RecommendationRequest,
    Status,
    rounded_columns,
    similarity_matrix,
)
from service.recommend.ranking import Matrix, RankingParams, fuse
from service.recommend.schemas import PopularTier
from service.recommend.trace import StoredCandidate
from service.users.models import User
from service.vectors.store import VectorStore

POPULAR_WINDOW_DAYS = 30
# Where a popular list's items come from, tried in this order until it holds k.
POPULAR_TIERS: tuple[PopularTier, ...] = ("recent", "all_time", "catalog")

PopularRow = tuple[str, str, str, int]  # item id, title, vector version, events counted


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
) -> Ranked:
    """k items the user has not used, from three tiers in turn, each pick labelled by its tier:
    the tenant's most-used items of the last 30 days, then of all time, then the rest of
    the catalog by item id. A heavy user or a quiet tenant still gets a full list, and
    the list never claims more popularity than the item has.

    Avoid-facets still apply (items squarely on one are dropped): a stated dislike
    holds even before there is anything to like.
    """
    window = at - timedelta(days=POPULAR_WINDOW_DAYS)

    def fetch(tier: PopularTier, limit: int, offset: int) -> list[PopularRow]:
        if tier == "catalog":
            return _catalog_page(session, user.tenant_id, request.category, limit, offset)
        return _popular_page(session, user.tenant_id, at,
                             window if tier == "recent" else None, request.category, limit,
                             offset)

    seen: set[str] = set()  # every item a tier has offered, so later tiers skip it
    picks: list[Pick] = []
    candidates: list[StoredCandidate] = []
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
                status: Status = ("dropped_avoid" if dropped[j] else "not_selected" if full
                                  else "returned")
                if status == "returned":
                    picks.append(Pick(
                        item_id=item_id, title=title, score=float(count), because=None,
                        explanation=popular_explanation(tier, count, POPULAR_WINDOW_DAYS),
                        popular_tier=tier))
                runners_up += status == "not_selected"
                candidates.append(StoredCandidate(
                    item_id=item_id, title=title, sims=sims[j], base_score=float(count),
                    avoid_penalty=0.0, score=float(count), best_facet=None,
                    popular_events=count, popular_tier=tier, status=status))
            if len(page) < size:
                break
    excluded = {"consumed": consumed_seen,
                "dropped_avoid": sum(1 for c in candidates if c.status == "dropped_avoid")}
    return Ranked("popular", picks, candidates, excluded)
