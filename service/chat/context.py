"""One stored trace, read and typed, with the evidence it cites: all a chat answer may use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.chat.models import ChatTurn
from service.chat.schemas import MAX_HISTORY_TURNS, ChatRequest
from service.core.errors import NotFound
from service.ingest.evidence import EvidenceEvent as Evidence
from service.ingest.evidence import evidence_events
from service.profiles.schemas import EvidenceOut
from service.recommend.models import RecommendationTrace
from service.recommend.schemas import RecommendedItem, TraceFacet, TraceParameters
from service.users.models import User


@dataclass
class TraceContext:
    """One stored trace, read and typed, with the evidence it cites."""

    trace: RecommendationTrace
    parameters: TraceParameters
    facets: list[TraceFacet]
    items: list[RecommendedItem]
    asked: RecommendedItem | None
    evidence: dict[str, Evidence]  # evidence events with their titles, by id
    evidence_ids: frozenset[str]  # every id the trace holds as evidence: the valid citations
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), oldest first
    conversation_id: str = ""


def find_trace(session: Session, tenant_id: int, recommendation_id: str) -> RecommendationTrace:
    """The tenant's trace; another tenant's id is as unknown as a made-up one."""
    trace = session.scalar(select(RecommendationTrace).where(
        RecommendationTrace.tenant_id == tenant_id,
        RecommendationTrace.recommendation_id == recommendation_id))
    if trace is None:
        raise NotFound("recommendation_not_found",
                       f"No recommendation {recommendation_id!r} in this tenant.")
    return trace


def load_context(session: Session, tenant_id: int, recommendation_id: str,
                 request: ChatRequest) -> TraceContext:
    """Everything the answer may draw on; 404 for an unknown list, item or conversation."""
    trace = find_trace(session, tenant_id, recommendation_id)
    items = [RecommendedItem.model_validate(i) for i in trace.items]
    asked = None
    if request.item_id is not None:
        asked = next((i for i in items if i.item_id == request.item_id), None)
        if asked is None:
            raise NotFound("item_not_in_recommendation",
                           f"Item {request.item_id!r} is not in recommendation "
                           f"{recommendation_id!r}.")
    facets = [TraceFacet.model_validate(f) for f in trace.facets]
    evidence = {e.event_id: as_evidence(e)
                for i in items if i.because for e in i.because.evidence}
    facet_ids = {e for f in facets for e in f.evidence}
    missing = facet_ids - set(evidence)
    user = session.get(User, trace.user_pk)
    if missing and user is not None:
        evidence.update(evidence_events(session, user, missing))
    ctx = TraceContext(
        trace=trace, parameters=TraceParameters.model_validate(trace.parameters),
        facets=facets, items=items, asked=asked, evidence=evidence,
        evidence_ids=frozenset(facet_ids | set(evidence)))
    if request.conversation_id is not None:
        ctx.conversation_id = request.conversation_id
        stored = _conversation(session, trace, request.conversation_id)
        if not stored:
            raise NotFound("conversation_not_found",
                           f"No conversation {request.conversation_id!r} about this "
                           "recommendation.")
        if request.history is None:
            ctx.history = [m for t in stored[-MAX_HISTORY_TURNS // 2:]
                           for m in (("user", t.question), ("assistant", t.answer))]
    else:
        ctx.conversation_id = "conv_" + uuid.uuid4().hex
    if request.history is not None:
        ctx.history = [(t.role, t.content) for t in request.history]
    return ctx


def _conversation(session: Session, trace: RecommendationTrace,
                  conversation_id: str) -> list[ChatTurn]:
    return list(session.scalars(
        select(ChatTurn).where(ChatTurn.trace_pk == trace.id,
                               ChatTurn.conversation_id == conversation_id)
        .order_by(ChatTurn.id)))


def as_evidence(e: EvidenceOut) -> Evidence:
    # A stored trace copies each cited event's type and time when it is made; the shared
    # output model allows nulls only for live reads of events since deleted.
    if e.type is None or e.ts is None:
        raise ValueError(f"trace evidence {e.event_id!r} has no type or time")
    return Evidence(e.event_id, e.type, e.ts, e.item_id, e.title, e.text)



def facet_evidence(ctx: TraceContext, facet: TraceFacet, limit: int) -> list[Evidence]:
    """Evidence the listed items cite first, then the newest; the rest stays unshown."""
    cited = {e.event_id for i in ctx.items if i.because for e in i.because.evidence}
    known = [ctx.evidence[e] for e in facet.evidence if e in ctx.evidence]
    known.sort(key=lambda e: (e.event_id not in cited, -e.ts.timestamp()))
    return known[:limit]

