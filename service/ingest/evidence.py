"""The events behind a facet, read back with their items: what the profile, the
recommendations and the chat cite as evidence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.core.hashing import chunks
from service.ingest.models import Event
from service.users.models import User


@dataclass
class EvidenceEvent:
    """One event behind a facet, with the title of its item when it has one."""

    event_id: str
    type: str
    ts: datetime
    item_id: str | None
    title: str | None
    text: str | None


@dataclass(frozen=True)
class EvidenceItem:
    """The catalog columns of an evidence event's item: its title, indexed text hash
    (the version of its stored vector), category, and tags as the stored JSON text."""

    title: str
    version: str
    category: str | None
    tags_json: str | None


# Built once: the expanding IN parameter skips per-value coercion (GET profile's hot path).
_EVIDENCE_QUERY = (
    select(Event.event_id, Event.type, Event.ts, Event.item_id, Event.text, Item.title,
           Item.indexed_hash, Item.category, cast(Item.tags, Text))
    .outerjoin(Item, (Item.tenant_id == Event.tenant_id) & (Item.item_id == Event.item_id))
    .where(Event.tenant_id == bindparam("tenant"), Event.user_pk == bindparam("user"),
           Event.event_id.in_(bindparam("ids", expanding=True)))
)


def evidence_events(session: Session, user: User, event_ids: set[str]) -> dict[str, EvidenceEvent]:
    """The events (with item titles) behind a set of evidence ids, one query per 500."""
    return evidence_and_items(session, user, event_ids)[0]


def evidence_and_items(
    session: Session, user: User, event_ids: set[str]
) -> tuple[dict[str, EvidenceEvent], dict[str, EvidenceItem]]:
    """`evidence_events`, plus the catalog columns of each of their items still in the
    catalog (recommendations rank evidence by its vector and calibrate to its tags)."""
    found: dict[str, EvidenceEvent] = {}
    items: dict[str, EvidenceItem] = {}
    # On the session's connection: plain column reads need nothing of the ORM layer, whose
    # row processing took as long as the query (a recommendation reads ~200 of them).
    connection = session.connection()
    for part in chunks(sorted(event_ids)):
        rows = connection.execute(_EVIDENCE_QUERY,
                                  {"tenant": user.tenant_id, "user": user.id, "ids": part})
        for event_id, type_, ts, item_id, text, title, version, category, tags in rows:
            found[event_id] = EvidenceEvent(event_id, type_, ts, item_id, title, text)
            if item_id is not None and title is not None:
                items[item_id] = EvidenceItem(title, version or "", category, tags)
    return found, items


def user_item_titles(session: Session, user: User) -> list[str]:
    """The titles of every catalog item the user has an event on, sorted: what the
    model's words must not copy (labels, descriptions, narratives, explanations)."""
    return sorted(session.scalars(
        select(Item.title).join(Event, (Event.tenant_id == Item.tenant_id)
                                & (Event.item_id == Item.item_id))
        .where(Event.user_pk == user.id).distinct()))
