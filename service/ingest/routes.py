from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from service.core.batch import read_batch
from service.core.errors import ERROR_RESPONSES, ErrorResponse
from service.core.openapi import json_body
from service.core.schemas import UserIdPath
from service.deps import SessionDep, SettingsDep, TenantDep
from service.ingest import service
from service.ingest.history import list_events
from service.ingest.schemas import EventBatchIn, EventPage, IngestResult
from service.users.service import get_user

router = APIRouter(tags=["events"], responses=ERROR_RESPONSES)


@router.post(
    "/v1/events",
    response_model=IngestResult,
    openapi_extra=json_body(EventBatchIn),
    responses={409: {"model": ErrorResponse, "description": "event_id reused with new content"}},
)
async def post_events(
    request: Request, tenant: TenantDep, session: SessionDep, settings: SettingsDep
) -> IngestResult:
    """Store a batch of events: all or nothing, idempotent on `event_id`."""
    records = await read_batch(request, "events", settings.max_batch_events)
    return await run_in_threadpool(service.ingest_events, session, tenant.id, records, settings)


@router.get("/v1/users/{user_id}/events", response_model=EventPage)
def get_user_events(
    user_id: UserIdPath,
    tenant: TenantDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EventPage:
    """A user's events, newest first, a page at a time."""
    user = get_user(session, tenant.id, user_id)
    return list_events(session, user, limit, cursor)
