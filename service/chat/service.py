"""The "why was this recommended?" chat (DESIGN.md §2, §5), answered from one stored trace.

The model is shown the trace of one list and nothing else: the facets it used with
their decayed strengths and evidence, the items with their scores and reasons, and
the decay parameters. Every user- or catalog-written part is quoted inside a
delimited data block. The answer is then checked, not trusted: a citation that is
not evidence in the trace is removed and flagged, and an answer that neither cites
the trace nor declines is replaced by the fixed decline phrase and the trace's own
reason (`source: "fallback"`). A model that cannot be reached is a 503 and nothing
is stored: the user asked for the model, so no template stands in for it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.runnables import Runnable
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.chat.models import ChatTurn
from service.chat.schemas import (
    MAX_HISTORY_TURNS,
    AnswerSource,
    ChatAnswer,
    ChatRequest,
    ChatTurnOut,
)
from service.core.errors import ApiError, not_found
from service.core.schemas import EXTERNAL_ID_PATTERN
from service.llm.prompts import PromptFile
from service.llm.runtime import LLMRuntime
from service.llm.tokens import count_tokens
from service.profiles.schemas import EvidenceOut
from service.profiles.service import EvidenceEvent as Evidence
from service.profiles.service import evidence_events
from service.recommend.explain import REASON_TEXT, VERBS, title_variants
from service.recommend.models import RecommendationTrace
from service.recommend.schemas import (
    Because,
    ReasonKind,
    RecommendedItem,
    TraceFacet,
    TraceParameters,
)
from service.summaries.activity import untrusted
from service.users.models import User

CHAT_PROMPT = "explain_chat"
DECLINE = "The trace does not say."
CHAT_MAX_OUTPUT_TOKENS = 400  # one to three sentences; a looping small model stops here
ANSWER_MAX_CHARS = 4000
TRACE_BUDGET_TOKENS = 2400  # the embedded model has 5k tokens of context in all
HISTORY_BUDGET_TOKENS = 900
TITLE_CHARS = 120
TEXT_CHARS = 200
# (items listed, evidence lines per facet), tried in order until the block fits the budget.
TRACE_SHAPES = ((20, 6), (10, 4), (5, 3), (3, 2), (1, 1))

# How the deterministic answer says an event-based reason to the person.
EVENT_REASONS: dict[ReasonKind, str] = {
    "facet": "of your interests",
    "co_occurrence": "people who liked what you liked also liked it",
    "transition": "people who did what you did went on to it next",
    "sequence": "it often comes next after what you did recently",
    "content": "it is much like something you liked",
}

_DECLINED = re.compile(r"\bthe trace does(?: not|n[’']t) say\b", re.IGNORECASE)
_BRACKETS = re.compile(r"\[([^\[\]\n]{1,300})\]")
_EVENT_ID = re.compile(EXTERNAL_ID_PATTERN)


# -- the trace as the model sees it ---------------------------------------------------


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
        raise not_found("recommendation_not_found",
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
            raise not_found("item_not_in_recommendation",
                            f"Item {request.item_id!r} is not in recommendation "
                            f"{recommendation_id!r}.")
    facets = [TraceFacet.model_validate(f) for f in trace.facets]
    evidence = {e.event_id: _as_evidence(e)
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
            raise not_found("conversation_not_found",
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


def _as_evidence(e: EvidenceOut) -> Evidence:
    # A stored trace copies each cited event's type and time when it is made; the shared
    # output model allows nulls only for live reads of events since deleted.
    if e.type is None or e.ts is None:
        raise ValueError(f"trace evidence {e.event_id!r} has no type or time")
    return Evidence(e.event_id, e.type, e.ts, e.item_id, e.title, e.text)


def _day(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def _evidence_line(e: Evidence) -> str:
    what = (untrusted(e.title, TITLE_CHARS) if e.title
            else untrusted(e.text, TEXT_CHARS) if e.text
            else untrusted(e.item_id or "", TITLE_CHARS))
    return f"[{e.event_id}] {_day(e.ts)} {VERBS.get(e.type, e.type)} {what}"


def _facet_evidence(ctx: TraceContext, facet: TraceFacet, limit: int) -> list[Evidence]:
    """Evidence the listed items cite first, then the newest; the rest stays unshown."""
    cited = {e.event_id for i in ctx.items if i.because for e in i.because.evidence}
    known = [ctx.evidence[e] for e in facet.evidence if e in ctx.evidence]
    known.sort(key=lambda e: (e.event_id not in cited, -e.ts.timestamp()))
    return known[:limit]


def _score(item: RecommendedItem) -> str:
    # A popular item's score is a count of uses; a personal one is a fraction.
    return f"{item.score:g}" if item.because is None else f"{item.score:.3f}"


def _reason(because: Because) -> str:
    """The reason in words: the interest, or what the model saw in the person's events."""
    if because.kind == "facet":
        return (f"for the interest {untrusted(because.label or '', 80)} "
                f"(similarity {because.similarity or 0:.2f})")
    return f"because {REASON_TEXT[because.kind][1]}"


def _item_line(rank: int, item: RecommendedItem) -> str:
    line = f"{rank}. {untrusted(item.title, TITLE_CHARS)} (item {item.item_id}), score "
    if item.because is None:
        return line + (f"{_score(item)} (no personal reason: "
                       f"{untrusted(item.explanation, 160)})")
    ids = " ".join(f"[{e.event_id}]" for e in item.because.evidence)
    return line + f"{_score(item)}, {_reason(item.because)}; evidence {ids or 'none'}"


def render_trace(ctx: TraceContext, items_shown: int, evidence_shown: int) -> str:
    """The data block: plain lines, every user- or catalog-written part quoted."""
    p = ctx.parameters
    trace = ctx.trace
    out = [f"Recommendation {trace.recommendation_id}, made {_day(trace.created_at)}, "
           f"{len(ctx.items)} items."]
    if trace.source == "popular":
        out.append("Source: the person had no active interests, so these are items other "
                   f"people used most in the last {p.popular_window_days} days, then of all "
                   "time, then other catalog items; each item's reason says which.")
    elif trace.source == "hybrid":
        ranker = p.models.ranker if p.models else None
        out.append("Source: the person's interests and what the service learned from "
                   "everyone's activity (items liked together, what people do next, "
                   "recent-activity patterns, similar items, popularity), ranked together by "
                   + ("a learned ranker" if ranker else "a fixed blend of those signals")
                   + ". Each item's reason is its strongest one that the person's own "
                   "events support.")
    else:
        out.append("Source: the person's interests. An item's score is the interest's "
                   "strength times its similarity to the item, less penalties for "
                   "interests the person avoids.")
    out.append(f"Decay: an interest's strength halves every {p.half_life_short_days:g} days "
               f"if short-term and every {p.half_life_long_days:g} days if long-term, counted "
               "from when it was last reinforced; pinned interests do not decay.")
    if ctx.facets:
        out += ["", "Interests used:"]
    for f in ctx.facets:
        head = (f"- {untrusted(f.label, 80)}: {f.polarity}, {f.horizon}-term"
                f"{', pinned' if f.pinned else ''}, strength {f.strength:.3f} at the time "
                f"(set to {f.stored_strength:.3f} on {_day(f.strength_at)}); "
                f"{untrusted(f.description, TEXT_CHARS)}")
        shown = _facet_evidence(ctx, f, evidence_shown)
        more = len(f.evidence) - len(shown)
        out.append(head)
        out += [f"  {_evidence_line(e)}" for e in shown]
        if more > 0:
            out.append(f"  ({more} more evidence events not shown)")
    out += ["", "Items recommended (rank, title, score, reason):"]
    listed = ctx.items[:items_shown]
    out += [_item_line(n, i) for n, i in enumerate(listed, start=1)]
    if len(ctx.items) > len(listed):
        out.append(f"({len(ctx.items) - len(listed)} more items not shown)")
    if ctx.asked is not None:
        out += ["", _asked_block(ctx, ctx.asked)]
    return "\n".join(out)


def _asked_block(ctx: TraceContext, item: RecommendedItem) -> str:
    rank = ctx.items.index(item) + 1
    lines = [f"The question is about item {item.item_id}: {untrusted(item.title, TITLE_CHARS)}, "
             f"rank {rank}, score {_score(item)}."]
    if item.because is None:
        lines.append("It was not chosen from the person's activity (a popular or catalog "
                     "item); the trace holds no personal reason for it.")
    else:
        b = item.because
        if b.kind == "facet":
            lines.append(f"Because: the interest {untrusted(b.label or '', 80)}, strength "
                         f"{b.strength or 0:.3f} at the time, similarity "
                         f"{b.similarity or 0:.2f}. Evidence:")
        else:
            lines.append(f"Because: {REASON_TEXT[b.kind][1]}. The person's events it rests "
                         "on:")
        lines += [f"  {_evidence_line(_as_evidence(e))}" for e in b.evidence]
    lines.append(f"Explanation shown: {untrusted(item.explanation, 400)}")
    return "\n".join(lines)


def fitted_trace(ctx: TraceContext) -> str:
    """The richest rendering that fits the token budget (long lists lose their tail)."""
    block = ""
    for items_shown, evidence_shown in TRACE_SHAPES:
        block = render_trace(ctx, items_shown, evidence_shown)
        if count_tokens(block) <= TRACE_BUDGET_TOKENS:
            break
    return block


def _plain(text: str) -> str:
    """The person's own words, kept from opening or closing the data block."""
    return text.replace("<", "‹").replace(">", "›")


def build_messages(prompt: PromptFile, ctx: TraceContext,
                   question: str) -> list[tuple[str, str]]:
    """System rules, then as much recent history as the budget holds, then data + question."""
    rendered = prompt.render(trace=fitted_trace(ctx), question=_plain(question),
                             decline=DECLINE)
    past: list[tuple[str, str]] = []
    used = 0
    for role, text in reversed(ctx.history):
        cost = count_tokens(text)
        if used + cost > HISTORY_BUDGET_TOKENS:
            break
        past.insert(0, ("human" if role == "user" else "ai", _plain(text)))
        used += cost
    head = rendered[:1] if rendered[0][0] == "system" else []
    return [*head, *past, *rendered[len(head):]]


# -- calling the model ------------------------------------------------------------------


def llm_unavailable(exc: BaseException) -> ApiError:
    return ApiError(503, "llm_unavailable",
                    f"The language model could not answer ({type(exc).__name__}); nothing "
                    "was stored. Try again later.")


def _answering_model(llm: LLMRuntime) -> Runnable[LanguageModelInput, BaseMessage]:
    return llm.chat_model().bind(max_tokens=CHAT_MAX_OUTPUT_TOKENS)


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)


def _usage(message: BaseMessage) -> tuple[int, int] | None:
    usage: Any = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))


@dataclass
class ModelReply:
    text: str
    prompt_tokens: int | None
    output_tokens: int | None
    latency_ms: int


def ask_model(llm: LLMRuntime, messages: list[tuple[str, str]]) -> ModelReply:
    """One plain-text call; any failure of the call is the model being unavailable."""
    started = time.perf_counter()
    try:
        with llm.call_slot():
            message = _answering_model(llm).invoke(messages)
    except Exception as exc:  # transport errors, timeouts, a server answering 5xx
        raise llm_unavailable(exc) from exc
    usage = _usage(message)
    return ModelReply(_text(message), usage[0] if usage else None,
                      usage[1] if usage else None, _ms(started))


class AnswerStream:
    """The model's answer piece by piece, holding a call slot until it ends.

    The first piece is read on construction, so a server that is down is a plain
    503 before any event is sent; a failure later surfaces from `pieces()`.
    """

    def __init__(self, llm: LLMRuntime, messages: list[tuple[str, str]]) -> None:
        self._started = time.perf_counter()
        self._slot = ExitStack()
        self._slot.enter_context(llm.call_slot())
        self._parts: list[str] = []
        self._usage: list[tuple[int, int]] = []
        try:
            self._chunks: Iterator[BaseMessageChunk] = iter(
                _answering_model(llm).stream(messages))  # type: ignore[arg-type]
            self._first = next(self._chunks, None)
        except Exception as exc:  # transport errors, timeouts
            self._slot.close()
            raise llm_unavailable(exc) from exc

    def pieces(self) -> Iterator[str]:
        try:
            chunk = self._first
            while chunk is not None:
                usage = _usage(chunk)
                if usage:
                    self._usage.append(usage)
                text = _text(chunk)
                if text:
                    self._parts.append(text)
                    yield text
                try:
                    chunk = next(self._chunks, None)
                except Exception as exc:  # the server went away mid-answer
                    raise llm_unavailable(exc) from exc
        finally:
            self.close()

    def close(self) -> None:
        self._slot.close()

    def __del__(self) -> None:
        # A client gone before the first event never runs `pieces()`; free the slot anyway.
        self.close()

    def reply(self) -> ModelReply:
        text = "".join(self._parts)
        if not self._usage:
            return ModelReply(text, None, None, _ms(self._started))
        return ModelReply(text, sum(u[0] for u in self._usage), sum(u[1] for u in self._usage),
                          _ms(self._started))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


# -- checking the answer ----------------------------------------------------------------


@dataclass
class CheckedAnswer:
    answer: str
    cited: list[str]
    dropped: list[str]
    grounded: bool
    source: AnswerSource


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return "\n".join(line.strip() for line in text.strip().splitlines())


def check_citations(text: str, evidence_ids: Iterable[str]) -> tuple[str, list[str], list[str]]:
    """(text without unknown citations, cited trace ids, dropped ids).

    A bracket counts as a citation when everything in it, split at commas, looks like
    an event id; "[Director's cut]" in a quoted title is left alone. Case slips are
    forgiven when they leave one candidate ("[E12]" for "e12").
    """
    valid = set(evidence_ids)
    folded: dict[str, str | None] = {}
    for e in valid:
        folded[e.casefold()] = None if e.casefold() in folded else e
    cited: list[str] = []
    dropped: list[str] = []

    def resolve(match: re.Match[str]) -> str:
        ids = [part.strip() for part in re.split(r"[,;]", match[1])]
        if not all(_EVENT_ID.fullmatch(i) for i in ids):
            return match[0]
        keep = []
        for i in ids:
            real = i if i in valid else folded.get(i.casefold())
            if real is None:
                dropped.append(i)
            else:
                keep.append(real)
        cited.extend(keep)
        return "[" + ", ".join(keep) + "]" if keep else ""

    cleaned = _BRACKETS.sub(resolve, text)
    return _tidy(cleaned), list(dict.fromkeys(cited)), list(dict.fromkeys(dropped))


def check_answer(text: str, ctx: TraceContext, question: str) -> CheckedAnswer:
    """Keep trace citations, drop others; no citation and no decline means fallback."""
    text = text.replace("\x00", "")[:ANSWER_MAX_CHARS]
    cleaned, cited, dropped = check_citations(text, ctx.evidence_ids)
    if cited or (cleaned and _DECLINED.search(cleaned)):
        return CheckedAnswer(cleaned, cited, dropped, grounded=not dropped, source="model")
    answer, fallback_cited = fallback_answer(ctx, question)
    return CheckedAnswer(answer, fallback_cited, dropped, grounded=True, source="fallback")


# -- the deterministic answer -----------------------------------------------------------


def _named_item(items: Sequence[RecommendedItem], question: str) -> RecommendedItem | None:
    """The list's item whose title the question names (the longest such title wins)."""
    best: tuple[int, RecommendedItem] | None = None
    for item in items:
        for variant in title_variants(item.title):
            pattern = r"(?<!\w)" + re.escape(variant) + r"(?!\w)"
            if re.search(pattern, question, re.IGNORECASE) and (
                    best is None or len(variant) > best[0]):
                best = (len(variant), item)
    return best[1] if best else None


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _seen_when(evidence: Sequence[Evidence]) -> str:
    """"you liked “Alien” [e1] and “Dune” [e2]": one verb when the actions agree."""
    def what(e: Evidence) -> str:
        name = e.title or " ".join((e.text or e.item_id or "").split())[:60]
        return f"“{name}” [{e.event_id}]"

    verbs = [VERBS.get(e.type, e.type) for e in evidence]
    if len(set(verbs)) == 1:
        return f"you {verbs[0]} " + _join([what(e) for e in evidence])
    return _join([f"you {v} {what(e)}" for v, e in zip(verbs, evidence, strict=True)])


def fallback_answer(ctx: TraceContext, question: str) -> tuple[str, list[str]]:
    """The decline phrase and what the trace does say: the asked (or named) item's
    facet and evidence, else the strongest interests behind the list."""
    item = ctx.asked or _named_item(ctx.items, question)
    if item is not None and item.because is not None:
        b = item.because
        shown = [_as_evidence(e) for e in b.evidence[:2]]
        if b.kind == "facet":
            reason = (f"“{item.title}” was recommended for your interest in {b.label} "
                      f"(strength {b.strength or 0:.2f})")
        else:
            reason = f"“{item.title}” was recommended because {EVENT_REASONS[b.kind]}"
        if shown:
            reason += ", seen when " + _seen_when(shown)
        return f"{DECLINE} What it does show: {reason}.", [e.event_id for e in shown]
    if item is not None:
        return (f"{DECLINE} What it does show: “{item.title}” was not chosen from your own "
                f"activity. {item.explanation}"), []
    likes = [f for f in ctx.facets if f.polarity == "like"][:2]
    reasoned = [i for i in ctx.items if i.because is not None][:2]
    if not likes and reasoned:  # a hybrid list from the person's events alone
        parts, cited = [], []
        for i in reasoned:
            assert i.because is not None
            shown = [_as_evidence(e) for e in i.because.evidence[:1]]
            cited += [e.event_id for e in shown]
            parts.append(f"“{i.title}” because {EVENT_REASONS[i.because.kind]}, seen when "
                         + _seen_when(shown))
        return (f"{DECLINE} What it does show: {_join(parts)}."), cited
    if not likes:
        return (f"{DECLINE} What it does show: this list holds popular and catalog items, "
                "not items chosen from your own activity."), []
    parts, cited = [], []
    for f in likes:
        shown = _facet_evidence(ctx, f, 2)
        cited += [e.event_id for e in shown]
        parts.append(f"{f.label} (strength {f.strength:.2f}"
                     + (", seen when " + _seen_when(shown) if shown else "")
                     + ")")
    return (f"{DECLINE} What it does show: this list was built from your interests in "
            f"{_join(parts)}."), cited


# -- storing turns ----------------------------------------------------------------------


@dataclass(frozen=True)
class TurnRecord:
    """What a turn needs besides the answer: who asked, with which prompt, and when."""

    prompt: PromptFile
    model: str
    streamed: bool
    clock: Callable[[], datetime]


def record_turn(session: Session, ctx: TraceContext, request: ChatRequest, reply: ModelReply,
                record: TurnRecord) -> ChatAnswer:
    """Check the model's reply and store the turn with the trace; the checked answer."""
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
        raise not_found("recommendation_not_found",
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


def list_turns(session: Session, tenant_id: int, recommendation_id: str) -> list[ChatTurnOut]:
    trace = find_trace(session, tenant_id, recommendation_id)
    turns = session.scalars(select(ChatTurn).where(ChatTurn.trace_pk == trace.id)
                            .order_by(ChatTurn.id))
    return [ChatTurnOut(**_answer(t, recommendation_id).model_dump(), question=t.question,
                        streamed=t.streamed) for t in turns]


def forget_chats(session: Session, user: User) -> None:
    """Remove the user's chat turns (the caller commits): they quote the user's activity."""
    session.execute(delete(ChatTurn).where(ChatTurn.user_pk == user.id))

