from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.sse import EventSourceResponse, format_sse_event

from service.chat import service
from service.chat.schemas import ChatAnswer, ChatRequest, ChatTurnsOut
from service.core.errors import ERROR_RESPONSES, ApiError, ErrorBody, ErrorResponse
from service.core.pagination import CURSOR_DOC, decode_cursor, paginate, parse_key
from service.core.schemas import EXTERNAL_ID_PATTERN
from service.deps import ClockDep, LLMDep, SessionDep, SettingsDep, TenantDep

router = APIRouter(prefix="/v1", tags=["chat"], responses=ERROR_RESPONSES)

TURNS_CURSOR = "c"  # the chat turns of one list, by row id

RecommendationIdPath = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN,
                                           description="as returned with a list")]

STREAM_DESCRIPTION = (
    "With `Accept: text/event-stream`: server-sent events. Several `token` events "
    '(data: `{"text": ...}`, the model\'s words as written), then one `done` event whose '
    "data is the checked answer (the JSON object above; its `answer` is authoritative, "
    "unknown citations removed), or one `error` event (data: the error body) if the model "
    "fails midway, in which case nothing is stored."
)

CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The checked answer, stored as a turn of the conversation.",
          "content": {"text/event-stream": {"schema": {"type": "string",
                                                       "description": STREAM_DESCRIPTION}}}},
    503: {"model": ErrorResponse,
          "description": "the language model is unreachable or timed out; nothing was stored"},
}


def wants_events(accept: str) -> bool:
    """Whether the client asked for server-sent events (and did not refuse them, q=0)."""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() != "text/event-stream":
            continue
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            return float(q) > 0
        except ValueError:
            return True
    return False


@router.post("/recommendations/{recommendation_id}/chat", response_model=ChatAnswer,
             responses=CHAT_RESPONSES)
def chat(
    recommendation_id: RecommendationIdPath, body: ChatRequest, request: Request,
    tenant: TenantDep, session: SessionDep, llm: LLMDep, settings: SettingsDep,
    clock: ClockDep,
) -> ChatAnswer | EventSourceResponse:
    """Ask why this list (or one of its items) was recommended.

    The model answers only from the list's stored trace and cites evidence event ids
    as `[id]`; citations are checked against the trace, and a question the trace
    cannot answer gets "The trace does not say." Streams server-sent events when the
    client sends `Accept: text/event-stream`.
    """
    streaming = wants_events(request.headers.get("accept", ""))
    question = service.prepare_question(
        session, tenant.id, recommendation_id, body, settings.prompts_dir,
        model=llm.model_name, streamed=streaming, clock=clock)
    if not streaming:
        return service.answer_question(session, llm, question)
    stream = service.stream_answer(llm, question)  # a dead server is a 503 before any event

    def events() -> Iterator[bytes]:
        try:
            for piece in stream.pieces():
                yield format_sse_event(event="token", data_str=json.dumps({"text": piece}))
            answer = service.record_turn(session, question, stream.reply())
        except ApiError as exc:
            error = ErrorResponse(error=ErrorBody(code=exc.code, message=exc.message))
            yield format_sse_event(event="error", data_str=error.model_dump_json())
            return
        yield format_sse_event(event="done", data_str=answer.model_dump_json())

    return EventSourceResponse(events())


@router.get("/recommendations/{recommendation_id}/chat", response_model=ChatTurnsOut)
def chat_turns(
    recommendation_id: RecommendationIdPath, tenant: TenantDep, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100, description=CURSOR_DOC)] = None,
) -> ChatTurnsOut:
    """The questions asked about this list and the checked answers they got, oldest
    first, a page at a time."""
    after = None
    if cursor is not None:
        (turn_pk,) = decode_cursor(cursor, TURNS_CURSOR, 1)
        after = parse_key(turn_pk, int)
    rows, next_cursor = paginate(
        service.list_turns(session, tenant.id, recommendation_id, limit + 1, after), limit,
        TURNS_CURSOR, lambda row: (row[0],))
    return ChatTurnsOut(recommendation_id=recommendation_id, turns=[t for _, t in rows],
                        next_cursor=next_cursor)
