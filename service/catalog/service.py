"""Catalog upserts and look-ups, always inside one tenant."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.catalog.schemas import ItemIn, ItemUpsertResult
from service.core.batch import raise_if_problems, validate_records
from service.core.db import utcnow
from service.core.errors import ErrorDetail, not_found
from service.core.hashing import canonical_hash, chunks


def item_content(item: ItemIn) -> dict[str, Any]:
    return item.model_dump(exclude={"item_id"})


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
        row = {**item_content(item), "content_hash": digest, "updated_at": now}
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
