"""Reading a user's stored events back, newest first, with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from service.core.errors import ApiError, ErrorDetail
from service.ingest.models import Event
from service.ingest.schemas import EventOut, EventPage
from service.users.models import User


def encode_cursor(event: Event) -> str:
    raw = f"{event.ts.isoformat()}|{event.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts_text, _, id_text = raw.partition("|")
        ts = datetime.fromisoformat(ts_text)
        if ts.tzinfo is None:
            raise ValueError("naive")
        return ts, int(id_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "validation_error", "The cursor is not one this API returned.",
                       [ErrorDetail(code="invalid_cursor", message="unreadable cursor",
                                    field="cursor")]) from None


def list_events(session: Session, user: User, limit: int, cursor: str | None) -> EventPage:
    query = select(Event).where(Event.user_pk == user.id)
    if cursor is not None:
        ts, event_pk = decode_cursor(cursor)
        query = query.where(or_(Event.ts < ts, and_(Event.ts == ts, Event.id < event_pk)))
    rows = list(session.scalars(query.order_by(Event.ts.desc(), Event.id.desc()).limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    return EventPage(
        events=[
            EventOut(
                event_id=e.event_id, user_id=user.user_id, type=e.type, ts=e.ts,
                item_id=e.item_id, value=e.value, text=e.text,
                recommendation_id=e.recommendation_id, received_at=e.received_at,
            )
            for e in page
        ],
        next_cursor=encode_cursor(page[-1]) if more and page else None,
    )
