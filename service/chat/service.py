"""The "why was this recommended?" chat (DESIGN.md §2, §5), answered from one stored trace.

The model is shown the trace of one list and nothing else (`context.py` reads it,
`prompting.py` writes it out): the facets it used with their decayed strengths and
evidence, the items with their scores and reasons, and the decay parameters. Every
user- or catalog-written part is quoted inside a delimited data block. The answer
(`answering.py`) is then checked, not trusted (`checks.py`): a citation that is not
evidence in the trace is removed and flagged, and an answer that neither cites the
trace nor declines is replaced by the fixed decline phrase and the trace's own reason
(`fallback.py`, `source: "fallback"`). A model that cannot be reached is a 503 and
nothing is stored: the user asked for the model, so no template stands in for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.chat.answering import AnswerStream, ModelReply, ask_model
from service.chat.checks import check_answer
from service.chat.context import TraceContext, find_trace, load_context
from service.chat.models import ChatTurn
from service.chat.prompting import build_messages
from service.chat.schemas import ChatAnswer, ChatRequest, ChatTurnOut
from service.core.errors import NotFound
from service.llm.prompts import PromptFile, RenderedPrompt, load_prompt
from service.llm.runtime import LLMRuntime

CHAT_PROMPT = "explain_chat"


@dataclass(frozen=True)
class TurnRecord:
    """What a turn needs besides the answer: who asked, with which prompt, and when."""

    prompt: PromptFile
    model: str
    streamed: bool
    clock: Callable[[], datetime]


@dataclass(frozen=True)
class Question:
    """A question ready for the model: what it may draw on, the messages, how to store it."""

    ctx: TraceContext
    request: ChatRequest
    messages: RenderedPrompt
    record: TurnRecord


def prepare_question(
    session: Session, tenant_id: int, recommendation_id: str, request: ChatRequest,
    prompts_dir: Path, *, model: str, streamed: bool, clock: Callable[[], datetime],
) -> Question:
    """Read the trace and write the messages; 404 for an unknown list, item or conversation.

    Commits, so no transaction stays open while the model writes.
    """
    ctx = load_context(session, tenant_id, recommendation_id, request)
    prompt = load_prompt(prompts_dir, CHAT_PROMPT)
    messages = build_messages(prompt, ctx, request.message)
    session.commit()
    return Question(ctx, request, messages, TurnRecord(prompt, model, streamed, clock))


def answer_question(session: Session, llm: LLMRuntime, question: Question) -> ChatAnswer:
    """Ask the model, check its answer, store the turn; a dead model is a 503."""
    reply = ask_model(llm, question.messages)
    return record_turn(session, question, reply)


def stream_answer(llm: LLMRuntime, question: Question) -> AnswerStream:
    """The model's answer as it is written; a dead server is a 503 before the first piece.
    The caller stores it with `record_turn` once the stream has ended."""
    return AnswerStream(llm, question.messages)


def record_turn(session: Session, question: Question, reply: ModelReply) -> ChatAnswer:
    """Check the model's reply and store the turn with the trace; the checked answer."""
    ctx, request, record = question.ctx, question.request, question.record
    checked = check_answer(reply.text, ctx, request.message)
    trace = ctx.trace
    turn = ChatTurn(
        tenant_id=trace.tenant_id, user_pk=trace.user_pk, trace_pk=trace.id,
        conversation_id=ctx.conversation_id, turn_id="turn_" + uuid.uuid4().hex,
        item_id=request.item_id, question=request.message, answer=checked.answer,
        cited_event_ids=checked.cited, dropped_citations=checked.dropped,
        grounded=checked.grounded, source=checked.source, model=record.model[:200],
        prompt_name=record.prompt.name, prompt_version=record.prompt.version,
        streamed=record.streamed, prompt_tokens=reply.prompt_tokens,
        output_tokens=reply.output_tokens, latency_ms=reply.latency_ms,
        created_at=record.clock())
    session.add(turn)
    try:
        session.commit()
    except IntegrityError:  # the user (and so the trace) was deleted while the model wrote
        session.rollback()
        raise NotFound("recommendation_not_found",
                       f"Recommendation {trace.recommendation_id!r} is gone.") from None
    return _answer(turn, trace.recommendation_id)


def _answer(turn: ChatTurn, recommendation_id: str) -> ChatAnswer:
    return ChatAnswer(
        recommendation_id=recommendation_id, conversation_id=turn.conversation_id,
        turn_id=turn.turn_id, item_id=turn.item_id, answer=turn.answer,
        cited_event_ids=list(turn.cited_event_ids),
        dropped_citations=list(turn.dropped_citations), grounded=turn.grounded,
        source="fallback" if turn.source == "fallback" else "model", model=turn.model,
        prompt_tokens=turn.prompt_tokens, output_tokens=turn.output_tokens,
        created_at=turn.created_at)


def list_turns(session: Session, tenant_id: int, recommendation_id: str, limit: int,
               after: int | None = None) -> list[tuple[int, ChatTurnOut]]:
    """Up to `limit` turns (with their row ids) oldest first, those after row `after`."""
    trace = find_trace(session, tenant_id, recommendation_id)
    query = select(ChatTurn).where(ChatTurn.trace_pk == trace.id)
    if after is not None:
        query = query.where(ChatTurn.id > after)
    turns = session.scalars(query.order_by(ChatTurn.id).limit(limit))
    return [(t.id, ChatTurnOut(**_answer(t, recommendation_id).model_dump(),
                               question=t.question, streamed=t.streamed)) for t in turns]
