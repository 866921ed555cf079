"""Catalog upserts and look-ups, always inside one tenant."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.catalog.schemas import ItemIn, ItemUpsertResult
from service.core.batch import raise_if_problems, validate_records
from service.core.db import utcnow
from service.core.errors import ErrorDetail, not_found
from service.core.hashing import canonical_hash, chunks
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore

log = logging.getLogger(__name__)
INDEX_BATCH = 256


def item_content(item: ItemIn) -> dict[str, Any]:
    return item.model_dump(exclude={"item_id"})


def item_text(title: str, description: str | None, tags: list[str], category: str | None) -> str:
    """What gets embedded: the words that say what the item is about (not attributes)."""
    parts = [title]
    if category:
        parts.append(f"Category: {category}")
    if tags:
        parts.append("Tags: " + ", ".join(tags))
    if description:
        parts.append(description[:1000])
    return ". ".join(parts)


def text_hash(title: str, description: str | None, tags: list[str], category: str | None) -> str:
    return canonical_hash(item_text(title, description, tags, category))


def upsert_items(session: Session, tenant_id: int, records: list[Any]) -> ItemUpsertResult:
    """Insert new items, update changed ones; all or nothing."""
    valid, problems = validate_records(records, ItemIn)
    latest: dict[str, tuple[int, ItemIn, str]] = {}
    for index, item in valid:
        digest = canonical_hash(item_content(item))
        seen = latest.get(item.item_id)
        if seen is not None and seen[2] != digest:
            problems.append(ErrorDetail(
                index=index, field="item_id", code="duplicate_item_id",
                message=f"item {item.item_id!r} appears earlier in this batch (index {seen[0]}) "
                        "with different content"))
            continue
        latest[item.item_id] = (index, item, digest)
    raise_if_problems(problems)

    for attempt in range(3):
        try:
            return _write_items(session, tenant_id, latest)
        except IntegrityError:
            # Another request created one of these items first; the retry updates it.
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _write_items(
    session: Session, tenant_id: int, latest: dict[str, tuple[int, ItemIn, str]]
) -> ItemUpsertResult:
    existing: dict[str, tuple[int, str]] = {}
    for part in chunks(list(latest)):
        rows = session.execute(
            select(Item.item_id, Item.id, Item.content_hash)
            .where(Item.tenant_id == tenant_id, Item.item_id.in_(part))
        )
        existing.update({item_id: (pk, digest) for item_id, pk, digest in rows})

    now = utcnow()
    new_rows: list[dict[str, Any]] = []
    changed_rows: list[dict[str, Any]] = []
    for item_id, (_, item, digest) in latest.items():
        row = {**item_content(item), "content_hash": digest, "updated_at": now,
               "text_hash": text_hash(item.title, item.description, item.tags, item.category)}
        if item_id not in existing:
            new_rows.append({**row, "tenant_id": tenant_id, "item_id": item_id, "created_at": now})
        elif existing[item_id][1] != digest:
            changed_rows.append({**row, "id": existing[item_id][0]})
    if new_rows:
        session.execute(insert(Item), new_rows)
    if changed_rows:
        session.execute(update(Item), changed_rows)
    session.commit()
    return ItemUpsertResult(
        created=len(new_rows),
        updated=len(changed_rows),
        unchanged=len(latest) - len(new_rows) - len(changed_rows),
    )


def index_pending_items(
    session: Session, tenant_id: int, embedder: Embedder, vectors: VectorStore
) -> tuple[int, int]:
    """Embed every item whose text changed since it was last indexed, in batches.

    Returns (indexed, still pending). A vector-store or embedder failure leaves the
    rest pending; the SQL rows are already stored and the next call picks them up.
    """
    unindexed = (Item.tenant_id == tenant_id) & or_(
        Item.indexed_hash.is_(None), Item.text_hash.is_(None), Item.indexed_hash != Item.text_hash)
    indexed = 0
    after = 0
    while True:
        batch = list(session.scalars(select(Item).where(unindexed, Item.id > after)
                                     .order_by(Item.id).limit(INDEX_BATCH)))
        if not batch:
            return indexed, 0
        after = batch[-1].id
        texts = [item_text(i.title, i.description, i.tags, i.category) for i in batch]
        hashes = [canonical_hash(t) for t in texts]
        todo = [(i, t, h) for i, t, h in zip(batch, texts, hashes, strict=True)
                if i.indexed_hash != h]
        try:
            vecs = embedder.embed([t for _, t, _ in todo])
            vectors.upsert(tenant_id, "items", [i.item_id for i, _, _ in todo], vecs,
                           [{"item_id": i.item_id, **({"category": i.category} if i.category
                                                      else {})} for i, _, _ in todo])
        except Exception as exc:  # any embedder or store error: keep the rows pending
            log.warning("item indexing for tenant %s failed: %s", tenant_id, exc)
            session.rollback()
            left = session.scalar(select(func.count()).where(unindexed)) or 0
            return indexed, int(left)
        # Only what was embedded is recorded: text changed meanwhile stays pending.
        done = list(zip(batch, hashes, strict=True))
        session.execute(update(Item), [{"id": i.id, "indexed_hash": h} for i, h in done])
        legacy = [{"id": i.id, "text_hash": h} for i, h in done if i.text_hash is None]
        if legacy:
            session.execute(update(Item), legacy)
        session.commit()
        indexed += len(todo)


def get_item(session: Session, tenant_id: int, item_id: str) -> Item:
    item = session.scalar(select(Item).where(Item.tenant_id == tenant_id, Item.item_id == item_id))
    if item is None:
        raise not_found("item_not_found", f"No item {item_id!r} in this tenant.")
    return item


def known_item_ids(session: Session, tenant_id: int, item_ids: Iterable[str]) -> set[str]:
    """Which of these ids are in the tenant's catalog."""
    found: set[str] = set()
    for part in chunks(sorted(set(item_ids))):
        found.update(session.scalars(
            select(Item.item_id).where(Item.tenant_id == tenant_id, Item.item_id.in_(part))
        ))
    return found
