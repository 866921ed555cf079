from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from service.core.errors import ERROR_RESPONSES, ErrorResponse
from service.core.pagination import CURSOR_DOC, decode_cursor, paginate, parse_key
from service.core.schemas import UserIdPath
from service.deps import EmbedderDep, LLMDep, SessionDep, SettingsDep, TenantDep, VectorsDep
from service.ingest.models import Event
from service.summaries import service
from service.summaries.models import SummaryRun
from service.summaries.schemas import InterestSummary, SummaryRunList, SummaryRunOut, UserStatus
from service.users.service import get_user

router = APIRouter(prefix="/v1/users", tags=["summaries"], responses=ERROR_RESPONSES)

RUNS_CURSOR = "s"  # `s|<run id>`: the last run a page showed


def run_out(run: SummaryRun) -> SummaryRunOut:
    return SummaryRunOut(
        run_id=run.id, status=run.status,
        created_at=run.created_at, model=run.model, prompt_name=run.prompt_name,
        prompt_version=run.prompt_version, prompt_tokens=run.prompt_tokens,
        output_tokens=run.output_tokens, latency_ms=run.latency_ms, attempts=run.attempts,
        events_read=run.events_read, first_event_ts=run.first_event_ts,
        last_event_ts=run.last_event_ts, first_event_id=run.first_event_id,
        last_event_id=run.last_event_id,
        summary=InterestSummary.model_validate(run.summary) if run.summary else None,
        error_code=run.error_code,
        error=run.error,
    )


@router.post(
    "/{user_id}/summaries",
    response_model=SummaryRunOut,
    status_code=201,
    responses={
        409: {"model": ErrorResponse, "description": "no new events to summarize"},
        503: {"model": ErrorResponse,
              "description": "the model server, vector store or embedder is unreachable"},
    },
)
def summarize(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep, settings: SettingsDep,
    llm: LLMDep, embedder: EmbedderDep, vectors: VectorsDep,
) -> SummaryRunOut:
    """Group the events no refresh has read yet and name each group now, as a preview.

    The profile is not changed (`POST .../profile/refresh` merges a summary into it).
    A failed run is recorded too (see the list of runs).
    """
    user = get_user(session, tenant.id, user_id)
    run = service.summarize_user(session, user, llm, settings, embedder, vectors).run
    if run.status != "ok":
        raise service.summary_failure(run)
    return run_out(run)


@router.get("/{user_id}/summaries", response_model=SummaryRunList)
def list_summaries(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=100, description=CURSOR_DOC)] = None,
) -> SummaryRunList:
    """The user's summary runs, newest first, failures included, a page at a time."""
    user = get_user(session, tenant.id, user_id)
    before = None
    if cursor is not None:
        (run_id,) = decode_cursor(cursor, RUNS_CURSOR, 1)
        before = parse_key(run_id, int)
    runs, next_cursor = paginate(service.runs_for_user(session, user, limit + 1, before), limit,
                                 RUNS_CURSOR, lambda run: (run.id,))
    return SummaryRunList(runs=[run_out(r) for r in runs], next_cursor=next_cursor)


@router.get("/{user_id}", response_model=UserStatus)
def user_status(user_id: UserIdPath, tenant: TenantDep, session: SessionDep) -> UserStatus:
    """Whether the user's picture is up to date, and how the last summary went."""
    user = get_user(session, tenant.id, user_id)
    runs = service.runs_for_user(session, user, 1)
    count = session.scalar(select(func.count()).where(Event.user_pk == user.id)) or 0
    return UserStatus(user_id=user.user_id, stale=user.stale,
                      events_since_refresh=user.events_since_refresh, event_count=count,
                      last_run=run_out(runs[0]) if runs else None)
