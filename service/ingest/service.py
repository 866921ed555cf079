"""Event ingest: validate everything, then write everything or nothing.

Ingest never calls the LLM (DESIGN.md §2): it stores events and marks users stale.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from service.catalog.service import known_item_ids
from service.core.batch import validate_records
from service.core.config import Settings
from service.core.db import insert_new, utcnow
from service.core.errors import Conflict, ErrorDetail, InvalidRequest, Unavailable
from service.core.hashing import canonical_hash, chunks
from service.ingest.models import Event
from service.ingest.schemas import (
    ITEM_EVENT_TYPES,
    TEXT_EVENT_TYPES,
    EventIn,
    EventResult,
    IngestResult,
)
from service.users.models import User

WRITE_ATTEMPTS = 5


def event_content(event: EventIn) -> list[Any]:
    """What makes two events the same event (the id aside); times compared in UTC."""
    ts = event.ts.astimezone(UTC).isoformat(timespec="microseconds")
    return [event.user_id, event.type, ts, event.item_id, event.value, event.text,
            event.recommendation_id]


def derived_event_id(content_hash: str) -> str:
    return "ev_" + content_hash[:32]


def check_event(index: int, event: EventIn, settings: Settings, now: datetime) -> list[ErrorDetail]:
    """Rules that depend on the type and on settings (the schema checked the rest)."""
    problems: list[ErrorDetail] = []

    def bad(field: str, code: str, message: str) -> None:
        problems.append(ErrorDetail(index=index, field=field, code=code, message=message))

    if event.type in ITEM_EVENT_TYPES and event.item_id is None:
        bad("item_id", "missing", f"a {event.type!r} event must name an item_id")
    if event.type in TEXT_EVENT_TYPES and event.text is None:
        bad("text", "missing", f"a {event.type!r} event must carry text")
    if event.type == "rating":
        if event.value is None:
            bad("value", "missing", "a rating needs a value")
        elif not settings.rating_min <= event.value <= settings.rating_max:
            bad("value", "out_of_range",
                f"ratings go from {settings.rating_min} to {settings.rating_max}")
    elif event.value is not None and abs(event.value) > settings.max_abs_value:
        bad("value", "out_of_range", f"|value| must be at most {settings.max_abs_value:g}")
    if event.ts < settings.oldest_event_ts:
        bad("ts", "too_old", f"events before {settings.oldest_event_ts.isoformat()} are refused")
    elif event.ts > now + timedelta(seconds=settings.future_skew_seconds):
        bad("ts", "in_future",
            f"ts is more than {settings.future_skew_seconds} s ahead of the server clock")
    return problems


def ingest_events(
    session: Session, tenant_id: int, records: list[Any], settings: Settings
) -> IngestResult:
    now = utcnow()
    valid, problems = validate_records(records, EventIn)
    for index, event in valid:
        problems.extend(check_event(index, event, settings, now))

    wanted_items = {e.item_id for _, e in valid if e.item_id is not None}
    known = known_item_ids(session, tenant_id, wanted_items)
    for index, event in valid:
        if event.item_id is not None and event.item_id not in known:
            problems.append(ErrorDetail(
                index=index, field="item_id", code="unknown_item",
                message=f"item {event.item_id!r} is not in this tenant's catalog"))

    # One row per event id: exact repeats collapse, a changed repeat is a conflict.
    batch: dict[str, tuple[int, EventIn, str]] = {}
    results: dict[int, EventResult] = {}
    conflicts: list[ErrorDetail] = []
    for index, event in valid:
        digest = canonical_hash(event_content(event))
        event_id = event.event_id or derived_event_id(digest)
        first = batch.get(event_id)
        if first is None:
            batch[event_id] = (index, event, digest)
        elif first[2] == digest:
            results[index] = EventResult(index=index, event_id=event_id, status="duplicate")
        else:
            conflicts.append(ErrorDetail(
                index=index, field="event_id", code="event_conflict",
                message=f"event {event_id!r} appears at index {first[0]} with different content"))

    if problems or conflicts:
        _reject(problems, conflicts)
    writing = Retrying(stop=stop_after_attempt(WRITE_ATTEMPTS),
                       retry=retry_if_exception_type(Raced),
                       after=lambda _: session.rollback(), retry_error_callback=_busy)
    return writing(_write_events, session, tenant_id, batch, results, now)


class Raced(Exception):
    """A concurrent request stored some of these event ids between our read and our
    insert. Rolled back and read again, they show up as duplicates (or conflicts)."""


def _busy(_: RetryCallState) -> NoReturn:
    raise Unavailable("busy", "Too many concurrent writes of the same events; retry.",
                      headers={"Retry-After": "1"})


def _reject(problems: list[ErrorDetail], conflicts: list[ErrorDetail]) -> None:
    details = sorted(problems + conflicts, key=lambda d: (d.index or 0, d.field or ""))
    bad = len({d.index for d in details})
    if problems:
        raise InvalidRequest(f"{bad} event(s) are invalid; nothing was written.", details)
    raise Conflict("event_conflict",
                   f"{bad} event(s) reuse an event_id with different content; nothing was "
                   "written.", details)


def _write_events(
    session: Session,
    tenant_id: int,
    batch: dict[str, tuple[int, EventIn, str]],
    in_batch_duplicates: dict[int, EventResult],
    now: datetime,
) -> IngestResult:
    """Write the new events; `Raced` when a concurrent writer got to one of them first."""
    results = dict(in_batch_duplicates)
    stored: dict[str, str] = {}
    for part in chunks(list(batch)):
        rows = session.execute(
            select(Event.event_id, Event.content_hash)
            .where(Event.tenant_id == tenant_id, Event.event_id.in_(part))
        )
        stored.update(dict(rows.all()))

    conflicts: list[ErrorDetail] = []
    fresh: list[tuple[str, EventIn, str]] = []
    for event_id, (index, event, digest) in batch.items():
        if event_id not in stored:
            fresh.append((event_id, event, digest))
            results[index] = EventResult(index=index, event_id=event_id, status="created")
        elif stored[event_id] == digest:
            results[index] = EventResult(index=index, event_id=event_id, status="duplicate")
        else:
            conflicts.append(ErrorDetail(
                index=index, field="event_id", code="event_conflict",
                message=f"event {event_id!r} is already stored with different content"))
    if conflicts:
        _reject([], conflicts)

    if fresh:
        user_pks = _ensure_users(session, tenant_id, {e.user_id for _, e, _ in fresh})
        inserted = insert_new(
            session,
            Event,
            [
                {
                    "tenant_id": tenant_id, "user_pk": user_pks[e.user_id], "event_id": event_id,
                    "type": e.type, "ts": e.ts, "item_id": e.item_id, "value": e.value,
                    "text": e.text, "recommendation_id": e.recommendation_id,
                    "content_hash": digest, "received_at": now,
                }
                for event_id, e, digest in fresh
            ],
        )
        if inserted != len(fresh):
            raise Raced
        _mark_stale(session, user_pks, fresh)
    session.commit()
    ordered = [results[i] for i in sorted(results)]
    return IngestResult(accepted=len(fresh), duplicates=len(ordered) - len(fresh), events=ordered)


def _ensure_users(session: Session, tenant_id: int, user_ids: set[str]) -> dict[str, int]:
    """Primary keys for these users, creating the missing ones (race-safe)."""
    pks = _user_pks(session, tenant_id, user_ids)
    missing = sorted(user_ids - pks.keys())
    if missing:
        created = utcnow()
        insert_new(session, User, [
            {"tenant_id": tenant_id, "user_id": u, "created_at": created,
             "events_since_refresh": 0, "stale": False}
            for u in missing
        ])
        pks.update(_user_pks(session, tenant_id, set(missing)))
    return pks


def _user_pks(session: Session, tenant_id: int, user_ids: set[str]) -> dict[str, int]:
    pks: dict[str, int] = {}
    for part in chunks(sorted(user_ids)):
        rows = session.execute(
            select(User.user_id, User.id).where(User.tenant_id == tenant_id, User.user_id.in_(part))
        )
        pks.update(dict(rows.all()))
    return pks


def _mark_stale(
    session: Session, user_pks: dict[str, int], fresh: list[tuple[str, EventIn, str]]
) -> None:
    """Count the new events per user and flag them for a profile refresh."""
    counts: dict[int, int] = {}
    for _, event, _ in fresh:
        pk = user_pks[event.user_id]
        counts[pk] = counts.get(pk, 0) + 1
    by_count: dict[int, list[int]] = {}
    for pk, n in counts.items():
        by_count.setdefault(n, []).append(pk)
    # The rows are locked first in one order, by primary key: two batches updating the
    # same users count by count (below) would otherwise lock them in different orders and
    # deadlock on PostgreSQL (SQLite ignores the lock; its writes are serial anyway).
    # FOR NO KEY UPDATE, the lock an UPDATE of these columns takes, not FOR UPDATE: each
    # batch's event rows already hold KEY SHARE on their users (the foreign key), which
    # FOR UPDATE waits for, so two batches of the same user would wait on each other.
    for part in chunks(sorted(counts)):
        session.execute(select(User.id).where(User.id.in_(part)).order_by(User.id)
                        .with_for_update(key_share=True))
    # One statement per distinct count (a handful), not one per user.
    for n, pks in by_count.items():
        for part in chunks(sorted(pks)):
            session.execute(
                update(User)
                .where(User.id.in_(part))
                .values(events_since_refresh=User.events_since_refresh + n, stale=True)
            )
