"""The last step of a list: its trace, typed when it is written and read back as `TraceOut`.

A trace is a snapshot: the facets with the strengths they had, every candidate with the
sources that proposed it, its ranker features and score, the items returned with their
reasons, and the parameters (the tenant's model artifact and ranker version among
them). What the user did afterwards is not copied in; it is read from the events that
carry the `recommendation_id`. The chat answers only from this record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, NotRequired, TypedDict

from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_json
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from service.core.db import EncodedJSON
from service.core.errors import NotFound
from service.ingest.models import Event
from service.recommend.models import RecommendationTrace
from service.recommend.schemas import (
    CandidateStatus,
    ExplanationCall,
    FeedbackEvent,
    PopularTier,
    ReasonKind,
    RecommendedItem,
    Source,
    TraceOut,
    TraceParameters,
)
from service.users.models import User


def r6(x: float) -> float:
    return round(float(x), 6)


class StoredFacet(BaseModel):
    facet_id: str
    label: str
    description: str
    polarity: Literal["like", "avoid"]
    horizon: Literal["short", "long"]
    pinned: bool
    strength: float
    stored_strength: float
    strength_at: str
    evidence: list[str]
    quota: int | None = None


class SourceRow(TypedDict):
    """`TraceSourceHit`'s fields (`via` left out where there is none, as for its default)."""

    score: float
    rank: int
    via: NotRequired[str]


class CandidateRow(TypedDict):
    """One candidate as stored, the one declaration of its fields (`TraceCandidate` reads
    them back, with `sims` as `similarities` per facet id): `sims` follows the trace's
    facet order (likes, then avoids), and a field without a value is left out. Plain
    dicts, not models: hybrid lists trace a hundred candidates a request, and validating
    each as a model before encoding it took 60% of the encoding's time (2.5 ms against
    0.9 ms for 100 rows on session 40's machine); what is stored is validated when it is
    read back (`TraceOut`)."""

    item_id: str
    title: str
    sims: list[float]
    base_score: float
    avoid_penalty: float
    score: float
    best_facet: str | None
    status: CandidateStatus
    popular_events: NotRequired[int]  # popular lists
    popular_tier: NotRequired[PopularTier]
    mmr_rank: NotRequired[int]  # picked items
    mmr_objective: NotRequired[float]
    sources: NotRequired[dict[str, SourceRow]]  # hybrid lists
    features: NotRequired[list[float]]
    reason: NotRequired[ReasonKind]
    # Whether the candidate's reason reads as related to it (its lead citation's cosine
    # >= `reasons.RELATED_MIN`); with `unexplained_keep` < 1, one that does not kept only
    # that share of its relevance. Left out where no reason was looked for.
    explained: NotRequired[bool]


class StoredItem(RecommendedItem):
    rank: int
    explanation_problem: str | None = None
    llm: ExplanationCall | None = None
    popular_tier: PopularTier | None = None


_TRACE_INSERT = insert(RecommendationTrace)
# One serializer call for the whole list: a hundred `model_dump` calls cost twice as much.
_FACETS = TypeAdapter(list[StoredFacet])
_ITEMS = TypeAdapter(list[StoredItem])


def write_trace(session: Session, user: User, recommendation_id: str, at: datetime,
                source: Source, parameters: TraceParameters, facets: list[StoredFacet],
                candidates: Sequence[CandidateRow], items: list[StoredItem],
                excluded: dict[str, int]) -> None:
    """One INSERT with bound parameters (its compiled form is cached), no unit of work:
    the trace is written once and never updated. The caller commits."""
    session.connection().execute(_TRACE_INSERT, {
        "tenant_id": user.tenant_id, "user_pk": user.id,
        "recommendation_id": recommendation_id, "created_at": at, "source": source,
        # Each part encoded by pydantic in one Rust call, not dumped to Python objects and
        # encoded again by `json` (the same values; the largest part, every candidate's
        # sources and features: 0.6 ms for 200 candidates, against 3.3 ms that way).
        "parameters": EncodedJSON(parameters.model_dump_json()),
        "facets": EncodedJSON(_FACETS.dump_json(facets).decode()),
        "candidates": EncodedJSON(to_json(candidates).decode()),
        "items": EncodedJSON(_ITEMS.dump_json(items).decode()),
        "excluded": excluded,
    })


def get_trace(session: Session, tenant_id: int, recommendation_id: str) -> TraceOut:
    """The stored trace, plus what the user did since with the items it returned."""
    found = session.execute(
        select(RecommendationTrace, User.user_id)
        .join(User, User.id == RecommendationTrace.user_pk)
        .where(RecommendationTrace.tenant_id == tenant_id,
               RecommendationTrace.recommendation_id == recommendation_id)).one_or_none()
    if found is None:
        raise NotFound("recommendation_not_found",
                        f"No recommendation {recommendation_id!r} in this tenant.")
    trace, user_id = found
    # The trace's user (found within the tenant) scopes the events. A `tenant_id` term
    # as well would only invite SQLite to walk the whole tenant's events by
    # ix_events_tenant_ts, for the order it gives, instead of this user's.
    feedback = [
        FeedbackEvent(event_id=event_id, type=type_, ts=ts, item_id=item_id, value=value)
        for event_id, type_, ts, item_id, value in session.execute(
            select(Event.event_id, Event.type, Event.ts, Event.item_id, Event.value)
            .where(Event.user_pk == trace.user_pk,
                   Event.recommendation_id == recommendation_id)
            .order_by(Event.ts, Event.id))
    ]
    returned = {i["item_id"] for i in trace.items}
    facet_ids = [f["facet_id"] for f in trace.facets]
    return TraceOut.model_validate({
        "recommendation_id": trace.recommendation_id, "user_id": user_id,
        "source": trace.source, "created_at": trace.created_at,
        "parameters": trace.parameters, "facets": trace.facets,
        "candidates": [{**c, "similarities": dict(zip(facet_ids, c["sims"], strict=True))}
                       for c in trace.candidates],
        "excluded": trace.excluded,
        "items": [{**i, "feedback": [f for f in feedback if f.item_id == i["item_id"]]}
                  for i in trace.items],
        "other_feedback": [f for f in feedback if f.item_id not in returned],
    })
