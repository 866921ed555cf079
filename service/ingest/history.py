"""Reading a user's stored events back, newest first, with an opaque cursor."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from service.core.pagination import decode_cursor, paginate, parse_key
from service.ingest.models import Event
from service.ingest.schemas import EventOut, EventPage
from service.users.models import User

CURSOR_KIND = "e"


def _legacy_cursor(raw: str) -> list[str]:
    """Cursors issued before the kind prefix: `<ts>|<event pk>`."""
    ts_text, sep, id_text = raw.partition("|")
    if not sep:
        raise ValueError("not a cursor")
    return [ts_text, id_text]


def _aware(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        raise ValueError("naive")
    return ts


def decode_event_cursor(cursor: str) -> tuple[datetime, int]:
    ts_text, id_text = decode_cursor(cursor, CURSOR_KIND, 2, legacy=_legacy_cursor)
    return parse_key(ts_text, _aware), parse_key(id_text, int)


def list_events(session: Session, user: User, limit: int, cursor: str | None) -> EventPage:
    query = select(Event).where(Event.user_pk == user.id)
    if cursor is not None:
        ts, event_pk = decode_event_cursor(cursor)
        query = query.where(or_(Event.ts < ts, and_(Event.ts == ts, Event.id < event_pk)))
    rows = list(session.scalars(query.order_by(Event.ts.desc(), Event.id.desc()).limit(limit + 1)))
    page, next_cursor = paginate(rows, limit, CURSOR_KIND, lambda e: (e.ts.isoformat(), e.id))
    return EventPage(
        events=[
            EventOut(
                event_id=e.event_id, user_id=user.user_id, type=e.type, ts=e.ts,
                item_id=e.item_id, value=e.value, text=e.text,
                recommendation_id=e.recommendation_id, received_at=e.received_at,
            )
            for e in page
        ],
        next_cursor=next_cursor,
    )
