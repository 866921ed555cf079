"""Catalog upserts and look-ups, always inside one tenant."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.catalog.models import Item, pending_index
from service.catalog.schemas import ItemIn, ItemUpsertResult
from service.core.batch import raise_if_problems, validate_records
from service.core.db import utcnow
from service.core.errors import ErrorDetail, NotFound
from service.core.hashing import canonical_hash, chunks
from service.tenants.models import Tenant
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore

log = logging.getLogger(__name__)
INDEX_BATCH = 512


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


def bump_catalog_version(session: Session, tenant_id: int) -> None:
    """A new catalog token for the tenant, committed with the item writes it follows:
    in-memory catalog rows read under the old one are no longer used
    (`recommend.candidates.catalog_rows`)."""
    session.execute(update(Tenant).where(Tenant.id == tenant_id)
                    .values(catalog_version=uuid.uuid4().hex))


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
    if new_rows or changed_rows:
        bump_catalog_version(session, tenant_id)
    session.commit()
    return ItemUpsertResult(
        created=len(new_rows),
        updated=len(changed_rows),
        unchanged=len(latest) - len(new_rows) - len(changed_rows),
    )


@dataclass(frozen=True)
class _PendingBatch:
    """Up to INDEX_BATCH unindexed items as plain values (not ORM rows, which a commit
    would expire and reload one by one)."""

    pks: list[int]
    item_ids: list[str]
    categories: list[str | None]
    hashes: list[str]
    todo: list[int]  # positions whose text differs from what the store holds
    texts: list[str]
    legacy: list[int]  # positions without a stored text_hash (rows from before it)

    def metadata(self, position: int) -> dict[str, Any]:
        category = self.categories[position]
        return {"item_id": self.item_ids[position], **({"category": category} if category
                                                       else {})}


def _pending_batch(session: Session, unindexed: ColumnElement[bool], after: int
                   ) -> _PendingBatch | None:
    rows = session.execute(
        select(Item.id, Item.item_id, Item.title, Item.description, Item.tags, Item.category,
               Item.text_hash, Item.indexed_hash)
        .where(unindexed, Item.id > after).order_by(Item.id).limit(INDEX_BATCH)).all()
    if not rows:
        return None
    texts = [item_text(title, description, tags, category)
             for _, _, title, description, tags, category, _, _ in rows]
    hashes = [canonical_hash(t) for t in texts]
    todo = [n for n, (row, h) in enumerate(zip(rows, hashes, strict=True)) if row[7] != h]
    return _PendingBatch(
        pks=[row[0] for row in rows], item_ids=[row[1] for row in rows],
        categories=[row[5] for row in rows], hashes=hashes, todo=todo,
        texts=[texts[n] for n in todo], legacy=[n for n, row in enumerate(rows) if row[6] is None])


def index_pending_items(
    session: Session, tenant_id: int, embedder: Embedder, vectors: VectorStore
) -> tuple[int, int]:
    """Embed every item whose text changed since it was last indexed, in batches.

    Returns (indexed, still pending). A vector-store or embedder failure leaves the
    rest pending; the SQL rows are already stored and the next call picks them up.

    Embedding is nearly all the cost, so it never waits: while one batch's vectors are
    written (one Chroma upsert, one SQL update) the next batch is already being embedded
    in a helper thread (torch releases the GIL). Identical texts in a batch are embedded
    once.
    """
    unindexed = (Item.tenant_id == tenant_id) & pending_index()
    indexed = 0

    def embed(batch: _PendingBatch) -> list[list[float]]:
        distinct = list(dict.fromkeys(batch.texts))
        found = dict(zip(distinct, embedder.embed(distinct), strict=True))
        return [found[t] for t in batch.texts]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="item-embed") as pool:
        batch = _pending_batch(session, unindexed, 0)
        embedding: Future[list[list[float]]] | None = (
            pool.submit(embed, batch) if batch is not None else None)
        while batch is not None and embedding is not None:
            following = _pending_batch(session, unindexed, batch.pks[-1])
            try:
                vecs = embedding.result()
            except Exception as exc:  # any embedder error: keep the rows pending
                return indexed, _still_pending(session, unindexed, tenant_id, exc)
            next_embedding = pool.submit(embed, following) if following is not None else None
            try:
                vectors.upsert(tenant_id, "items", [batch.item_ids[n] for n in batch.todo], vecs,
                               [batch.metadata(n) for n in batch.todo])
            except Exception as exc:  # any store error: keep the rows pending
                if next_embedding is not None:
                    next_embedding.cancel()
                return indexed, _still_pending(session, unindexed, tenant_id, exc)
            # Only what was embedded is recorded: text changed meanwhile stays pending.
            session.execute(update(Item), [{"id": pk, "indexed_hash": h}
                                           for pk, h in zip(batch.pks, batch.hashes,
                                                            strict=True)])
            if batch.legacy:
                session.execute(update(Item), [{"id": batch.pks[n], "text_hash": batch.hashes[n]}
                                               for n in batch.legacy])
            bump_catalog_version(session, tenant_id)  # the rows' vector versions changed
            session.commit()
            indexed += len(batch.todo)
            batch, embedding = following, next_embedding
    return indexed, 0


def _still_pending(session: Session, unindexed: ColumnElement[bool], tenant_id: int,
                   exc: Exception) -> int:
    log.warning("item indexing for tenant %s failed: %s", tenant_id, exc)
    session.rollback()
    return int(session.scalar(select(func.count()).where(unindexed)) or 0)


def get_item(session: Session, tenant_id: int, item_id: str) -> Item:
    item = session.scalar(select(Item).where(Item.tenant_id == tenant_id, Item.item_id == item_id))
    if item is None:
        raise NotFound("item_not_found", f"No item {item_id!r} in this tenant.")
    return item


def known_item_ids(session: Session, tenant_id: int, item_ids: Iterable[str]) -> set[str]:
    """Which of these ids are in the tenant's catalog."""
    found: set[str] = set()
    for part in chunks(sorted(set(item_ids))):
        found.update(session.scalars(
            select(Item.item_id).where(Item.tenant_id == tenant_id, Item.item_id.in_(part))
        ))
    return found


# -- tag statistics ------------------------------------------------------------------------

# How many of a tenant's items carry each tag (its document frequency), for grouping's
# tag weights. Counting reads every item's tags, so counts are kept per tenant and
# recounted only when the catalog changed (its size or newest update); above
# TAG_COUNTS_EXACT_UP_TO items, at most every TAG_COUNTS_MAX_AGE seconds (about a second
# per 100,000 items; a weight a few minutes old changes no grouping much).
TAG_COUNTS_EXACT_UP_TO = 20_000
TAG_COUNTS_MAX_AGE = 300.0
TAG_COUNTS_TENANTS = 256  # tenants whose counts are kept, least recently used dropped


@dataclass(frozen=True)
class TagCounts:
    document_frequency: dict[str, int]  # normalized tag (or "category:<c>") -> items
    items: int
    signature: tuple[int, str]
    counted_at: float


_tag_counts: OrderedDict[int, TagCounts] = OrderedDict()
_tag_counts_lock = threading.Lock()


def normal_tag(tag: str) -> str:
    """A tag as grouping compares it: whitespace collapsed, case folded."""
    return " ".join(tag.split()).casefold()


def tag_keys(tags: Any, category: Any, attributes: Any = None) -> tuple[str, ...]:
    """An item's tags as grouping and calibration compare them: its tags and attribute
    genres normalized (`normal_tag`), each once, in order, then `category:<c>`."""
    genres = attributes.get("genres") if isinstance(attributes, dict) else None
    raw = [*(tags if isinstance(tags, list) else []),
           *(genres if isinstance(genres, list) else [])]
    keys = dict.fromkeys(normal_tag(t) for t in raw if isinstance(t, str) and t.strip())
    if isinstance(category, str) and category.strip():
        keys[f"category:{category.casefold()}"] = None
    return tuple(keys)


# Distinct (tags, category) pairs whose keys are kept: catalogs repeat their tag sets
# (100,000 synthetic items hold about 6,000; MovieLens genres far fewer).
STORED_TAG_KEYS_CACHED = 65_536


@lru_cache(maxsize=STORED_TAG_KEYS_CACHED)
def stored_tag_keys(tags_json: str | None, category: str | None) -> tuple[str, ...]:
    """`tag_keys` of an item's tags as the database holds them (JSON text, read without
    the driver's decoding), worked out once per distinct pair: decoding and normalising
    every row took a quarter of a recommendation's catalog reads."""
    tags = json.loads(tags_json) if tags_json else []
    return tag_keys(tags, category)


def count_tags(rows: Iterable[tuple[Any, Any, Any]]) -> tuple[dict[str, int], int]:
    """Document frequencies over (tags, category, attributes) rows: each of an item's
    `tag_keys` counted once."""
    counts: Counter[str] = Counter()
    items = 0
    for tags, category, attributes in rows:
        items += 1
        counts.update(tag_keys(tags, category, attributes))
    return dict(counts), items


def tag_counts(session: Session, tenant_id: int) -> TagCounts:
    """The tenant's tag document frequencies, counted again only when stale (see above)."""
    size, newest = session.execute(
        select(func.count(Item.id), func.max(Item.updated_at))
        .where(Item.tenant_id == tenant_id)).one()
    signature = (int(size or 0), str(newest))
    now = time.monotonic()
    with _tag_counts_lock:
        kept = _tag_counts.get(tenant_id)
        if kept is not None and (
                kept.signature == signature
                or (kept.items > TAG_COUNTS_EXACT_UP_TO
                    and now - kept.counted_at < TAG_COUNTS_MAX_AGE)):
            _tag_counts.move_to_end(tenant_id)
            return kept
    rows = session.execute(
        select(Item.tags, Item.category, Item.attributes).where(Item.tenant_id == tenant_id))
    frequency, items = count_tags((tags, category, attributes)
                                  for tags, category, attributes in rows)
    counted = TagCounts(frequency, items, signature, now)
    with _tag_counts_lock:
        _tag_counts[tenant_id] = counted
        _tag_counts.move_to_end(tenant_id)
        while len(_tag_counts) > TAG_COUNTS_TENANTS:
            _tag_counts.popitem(last=False)
    return counted
