"""What a summary run reads: the user's unread events, their catalog items and vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.core.errors import embedder_unavailable
from service.core.hashing import chunks
from service.ingest.models import Event
from service.profiles.models import Profile
from service.summaries.grouping import Vector, is_text_event
from service.users.models import User
from service.vectors.embeddings import Embedder
from service.vectors.errors import vector_store_call
from service.vectors.store import VectorStore


@dataclass
class Activity:
    """The events one run read, oldest first (grouped or not: all count as read)."""

    events: list[Event] = field(default_factory=list)

    @property
    def first(self) -> Event | None:
        return self.events[0] if self.events else None

    @property
    def last(self) -> Event | None:
        return self.events[-1] if self.events else None


def profile_read_through(session: Session, user: User) -> int:
    """The last event id the user's profile has read (0 before the first refresh)."""
    profile = session.get(Profile, user.id)
    return profile.read_through_event if profile is not None else 0


def recent_events(session: Session, user: User, read_through: int, limit: int) -> list[Event]:
    """The newest `limit` events no refresh has read, oldest first."""
    newest = session.scalars(
        select(Event).where(Event.user_pk == user.id, Event.id > read_through)
        .order_by(Event.id.desc()).limit(limit))
    return sorted(newest, key=lambda e: e.id)


def catalog_items(session: Session, tenant_id: int, item_ids: set[str]) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for part in chunks(sorted(item_ids)):
        for item in session.scalars(select(Item).where(Item.tenant_id == tenant_id,
                                                       Item.item_id.in_(part))):
            items[item.item_id] = item
    return items


def event_vectors(
    events: Sequence[Event], items: Mapping[str, Item], tenant_id: int,
    vectors: VectorStore, embedder: Embedder,
) -> tuple[dict[str, Vector], dict[int, Vector]]:
    """Stored item vectors and fresh text embeddings, for grouping."""
    versions = {i.item_id: i.indexed_hash for i in items.values() if i.indexed_hash}
    with vector_store_call():
        item_vectors = vectors.vectors(tenant_id, "items", versions) if versions else {}
    texts = [e for e in events if is_text_event(e)]
    try:
        embedded = embedder.embed([e.text or "" for e in texts])
    except Exception as exc:  # the embedder is a remote service in production
        raise embedder_unavailable("the user's texts", exc) from exc
    text_vectors = {e.id: np.asarray(v, dtype=np.float32)
                    for e, v in zip(texts, embedded, strict=True)}
    return item_vectors, text_vectors
