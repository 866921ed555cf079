"""Step 1 of a list: who could be recommended, and what each source says about them.

Candidates are the union of:

- facet retrieval: each like-facet's nearest unconsumed items in the tenant's item
  collection (Chroma), in proportion to the facet's decayed strength;
- the tenant's trained models (`service.training`): co-occurrence neighbours of the
  user's recent positive items, transitions from their last items, the sequence
  model's top N, TF-IDF content neighbours and popular items, `CANDIDATES_PER_SOURCE`
  from each, read from the artifact the app's `ModelRegistry` holds.

Items the user has any event on are never candidates; the category filter applies
to every source. Everything here reads; nothing is written.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar
from weakref import WeakKeyDictionary

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, Text, bindparam, cast, func, select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.catalog.service import stored_tag_keys
from service.core.hashing import chunks
from service.core.kept import Kept
from service.ingest.evidence import EvidenceEvent, evidence_and_items
from service.ingest.models import Event
from service.profiles.merge import DecayRules, decayed
from service.profiles.models import ProfileFacetRow
from service.profiles.reads import horizon_of, polarity_of
from service.profiles.runtime import ProfileRuntime
from service.recommend.ranking import Matrix
from service.tenants.models import Tenant
from service.training.contract import (
    MAX_HISTORY,
    CandidateSource,
    SourceHit,
    TenantModels,
    UserEvent,
)
from service.training.data import event_weight
from service.training.features import unit_mean
from service.users.models import User
from service.vectors.errors import vector_store_call
from service.vectors.store import VectorStore

MAX_ASK = 1000  # neighbours per facet, at most, in one query
CATEGORY_OVERFETCH = 4  # with a category filter, unfiltered neighbours asked per wanted one
CANDIDATES_PER_SOURCE = 100  # from each trained source; times CATEGORY_OVERFETCH with a filter

V = TypeVar("V")


@dataclass(frozen=True)
class ActiveFacet:
    facet_id: str
    label: str
    description: str
    polarity: Literal["like", "avoid"]
    horizon: Literal["short", "long"]
    pinned: bool
    strength: float  # decayed to the request's time
    stored_strength: float
    strength_at: datetime
    evidence: tuple[str, ...]
    vector: npt.NDArray[np.float32]


# The columns a list reads, selected as a tuple each: no ORM entity, identity map or
# change tracking for rows a request only reads (py-spy: the read fell from 3-4% of a
# request to 2.3%, about a third less).
_FACETS_QUERY = (
    select(ProfileFacetRow.facet_id, ProfileFacetRow.label, ProfileFacetRow.description,
           ProfileFacetRow.polarity, ProfileFacetRow.horizon, ProfileFacetRow.pinned,
           ProfileFacetRow.strength, ProfileFacetRow.strength_at, ProfileFacetRow.evidence,
           ProfileFacetRow.embedding)
    .where(ProfileFacetRow.user_pk == bindparam("user"), ProfileFacetRow.archived.is_(False),
           ProfileFacetRow.suppressed.is_(False))
    .order_by(ProfileFacetRow.id)
)


def active_facets(session: Session, user: User, at: datetime,
                  rules: DecayRules) -> list[ActiveFacet]:
    """Facets that may shape a list now, strongest first.

    Archived and suppressed facets never do; neither does one that has decayed
    below the archive floor since the last refresh (the next refresh archives it).
    The strengths decay as `decayed_strength` has them (`decayed`, the same rule).
    """
    facets = []
    for (facet_id, label, description, polarity, horizon, pinned, stored, stored_at,
         evidence, embedding) in session.execute(_FACETS_QUERY, {"user": user.id}):
        span = horizon_of(horizon)
        strength = decayed(stored, stored_at, span, pinned, at, rules)
        if strength < rules.archive_below and not pinned:
            continue
        facets.append(ActiveFacet(
            facet_id=facet_id, label=label, description=description,
            polarity=polarity_of(polarity), horizon=span, pinned=pinned, strength=strength,
            stored_strength=stored, strength_at=stored_at, evidence=tuple(evidence),
            # The stored float32 bytes as they are: no detour through Python floats.
            vector=np.frombuffer(embedding, dtype="<f4")))
    return sorted(facets, key=lambda f: (-f.strength, f.facet_id))


# Built once: the expanding IN parameters skip per-value coercion on the hot path. Run
# on the session's connection: plain column reads need nothing from the ORM layer.
# No DISTINCT: SQLite would sort every row into a temporary B-tree; a set dedups faster.
_CONSUMED_QUERY = (
    select(Event.item_id).where(Event.user_pk == bindparam("user"), Event.item_id.is_not(None))
)
# Tags as the stored JSON text (`stored_tag_keys` parses each distinct set once).
_TAGS_TEXT = cast(Item.tags, Text)
_CATALOG_QUERY = (
    select(Item.item_id, Item.title, Item.indexed_hash, Item.category, _TAGS_TEXT)
    .where(Item.tenant_id == bindparam("tenant"),
           Item.item_id.in_(bindparam("ids", expanding=True)))
)


def _raw_paramstyle(session: Session) -> str | None:
    """The driver's paramstyle when its SQL text can be run as it is (SQLite's `?`,
    psycopg's `%s`), else None: other drivers go through SQLAlchemy."""
    paramstyle = session.connection().dialect.paramstyle
    return paramstyle if paramstyle in ("qmark", "format", "pyformat") else None


def _mark(paramstyle: str) -> str:
    return "?" if paramstyle == "qmark" else "%s"


def consumed_items(session: Session, user: User) -> set[str]:
    """Every item the user has any event on: never recommended back to them. Run as the
    driver's SQL text (`_CONSUMED_QUERY`'s statement) where it can be: a heavy user's
    hundreds of rows cost SQLAlchemy's result machinery more than SQLite's read."""
    connection = session.connection()
    paramstyle = _raw_paramstyle(session)
    if paramstyle is None:
        found = connection.execute(_CONSUMED_QUERY, {"user": user.id}).scalars().all()
        return {item_id for item_id in found if item_id is not None}
    rows = connection.exec_driver_sql(
        "SELECT item_id FROM events WHERE user_pk = "
        f"{_mark(paramstyle)} AND item_id IS NOT NULL", (user.id,))
    return {item_id for (item_id,) in rows}


@dataclass(frozen=True)
class CatalogRow:
    title: str
    version: str  # the indexed text hash: what the stored vector was made from
    category: str | None
    tags: tuple[str, ...] = ()  # `catalog.service.tag_keys` (attribute genres aside)


@lru_cache(maxsize=64)
def _catalog_sql(paramstyle: str, n: int) -> str:
    """`_CATALOG_QUERY` for n ids as the driver's own SQL text."""
    mark = _mark(paramstyle)
    return ("SELECT item_id, title, indexed_hash, category, CAST(tags AS TEXT) FROM items "
            f"WHERE tenant_id = {mark} AND item_id IN ({', '.join([mark] * n)})")


class _CatalogCache:
    """Catalog rows kept in memory per tenant, under the tenant's catalog token
    (`Tenant.catalog_version`, renewed in the same transaction as every item write): rows
    read under one token are used only by requests that read the same token with their
    tenant. A row is never older than the token it is kept under (it was read after the
    token, in the same or a later transaction), so a request never sees a catalog older
    than its own tenant row. Bounded: `TENANTS` tenants (least recently used out), and a
    tenant's rows start again past `ROWS` (a catalog larger than that re-reads some)."""

    TENANTS = 16
    ROWS = 300_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: OrderedDict[int, tuple[str, dict[str, CatalogRow]]] = OrderedDict()

    def rows(self, tenant_id: int, version: str) -> dict[str, CatalogRow]:
        """The tenant's rows under `version` (a new, empty dict when the token changed)."""
        with self._lock:
            kept = self._tenants.get(tenant_id)
            if kept is None or kept[0] != version or len(kept[1]) > self.ROWS:
                kept = (version, {})
                self._tenants[tenant_id] = kept
            self._tenants.move_to_end(tenant_id)
            while len(self._tenants) > self.TENANTS:
                self._tenants.popitem(last=False)
            return kept[1]

    def clear(self) -> None:
        with self._lock:
            self._tenants.clear()


CATALOG_CACHE = _CatalogCache()


def catalog_token(session: Session, tenant_id: int) -> str | None:
    """The token of the tenant row this request read (the session's identity map holds
    the tenant that authenticated it, so this runs no query), None without a tenant."""
    tenant = session.get(Tenant, tenant_id)
    return None if tenant is None else tenant.catalog_version


def catalog_rows(session: Session, tenant_id: int, ids: Iterable[str]) -> dict[str, CatalogRow]:
    """The catalog rows of these items (those in the catalog), from `CATALOG_CACHE`
    while the tenant's catalog token is unchanged, else read.

    Reads take up to a thousand ids per query, run as the driver's SQL text (the same
    statement as `_CATALOG_QUERY`), since expanding an IN list of hundreds of parameters
    took SQLAlchemy as long as SQLite took to run the query. Other dialects go through
    SQLAlchemy. Items not in the catalog are read again next time (they may be added)."""
    version = catalog_token(session, tenant_id)
    kept = CATALOG_CACHE.rows(tenant_id, version) if version is not None else {}
    found: dict[str, CatalogRow] = {}
    missing: list[str] = []
    for item_id in set(ids):
        row = kept.get(item_id)
        if row is None:
            missing.append(item_id)
        else:
            found[item_id] = row
    if not missing:
        return found
    read: dict[str, CatalogRow] = {}
    connection = session.connection()
    paramstyle = _raw_paramstyle(session)
    for part in chunks(sorted(missing)):
        rows = (connection.exec_driver_sql(_catalog_sql(paramstyle, len(part)),
                                           (tenant_id, *part)) if paramstyle is not None
                else connection.execute(_CATALOG_QUERY, {"tenant": tenant_id, "ids": part}))
        for item_id, title, version_hash, category, tags in rows:
            read[item_id] = CatalogRow(title, version_hash or "", category,
                                       stored_tag_keys(tags, category))
    kept.update(read)  # one dict.update: atomic under the GIL for concurrent requests
    found.update(read)
    return found


Evidence = tuple[dict[str, EvidenceEvent], dict[str, CatalogRow]]
# A user's facets' evidence, kept between their requests: events are never changed once
# stored, and the catalog rows are kept under the catalog token like `CATALOG_CACHE`'s.
# The key holds the user's creation time, so a user deleted and made again (whose row id
# SQLite may reuse) never reads what the first one stored; 10 minutes at most. Bounded in
# evidence events (~700 bytes each with their rows, so ~70 MB at most).
_EVIDENCE: Kept[Evidence] = Kept(100_000, 600.0, lambda found: max(1, len(found[0])))


def evidence_with_items(session: Session, user: User, event_ids: Iterable[str]) -> Evidence:
    """The facets' evidence events (`ingest.evidence.evidence_and_items`) and the
    catalog row of each of their items still in the catalog, in one read: the rows carry
    the items' vector versions and the tags the profile's mix is made of. The dicts
    returned may be shared with other requests: callers never change them."""
    wanted = frozenset(event_ids)
    token = catalog_token(session, user.tenant_id)
    key = (user.tenant_id, user.id, user.created_at, token, wanted)
    kept = _EVIDENCE.get(key) if token is not None else None
    if kept is not None:
        return kept
    events, items = evidence_and_items(session, user, set(wanted))
    found = (events, {item_id: CatalogRow(item.title, item.version, item.category,
                                          stored_tag_keys(item.tags_json, item.category))
                      for item_id, item in items.items()})
    if token is not None:
        _EVIDENCE.put(key, found)
    return found


# Facet centroids (`unit_mean` of their evidence items' vectors), kept by the items they
# average, in order, under the tenant's catalog token: an item's stored vector changes
# only with the token (indexing writes the vector store first, then renews it), so the
# same items under the same token give the same centroid. Averaging each facet's vectors
# was a twentieth of a warm request. Bounded in centroids (~1.5 KB each, so ~30 MB at
# most), 10 minutes each at most.
_CENTROIDS: Kept[npt.NDArray[np.float32]] = Kept(20_000, 600.0)


def evidence_centroid(tenant_id: int, token: str | None, item_ids: tuple[str, ...],
                      vectors: dict[str, npt.NDArray[np.float32]]
                      ) -> npt.NDArray[np.float32] | None:
    """`unit_mean` of these items' vectors (each in `vectors`, read under `token`), None
    for none; kept while the token holds. The array returned is shared: never changed."""
    if not item_ids:
        return None
    key = (tenant_id, token, item_ids)
    found = _CENTROIDS.get(key) if token is not None else None
    if found is None:
        found = unit_mean([vectors[i] for i in item_ids])
        if token is not None and found is not None:
            _CENTROIDS.put(key, found)
    return found


@dataclass
class Retrieved:
    candidates: list[str]  # unique, none consumed, in the order facets found them
    rows: dict[str, CatalogRow]  # catalog rows already read (all of them with a category)
    consumed_seen: int
    off_category: int
    asked: int  # neighbours per facet in the first query
    widened: bool


class _NeighbourCache:
    """Each facet vector's nearest items, kept under the tenant's catalog token.

    A like-facet's vector (its evidence's centroid) changes only when a refresh changes
    its evidence, and the item collection only when the catalog does (indexing writes
    Chroma first, then renews the token), so a user's requests between two refreshes
    ask Chroma the same questions: the answers are kept, keyed by the token, the
    vector's bytes, n and the filter, and a new token misses them all. `TTL_SECONDS`
    bounds how long any answer lives whatever happens; `PAIRS` bounds the memory per
    vector store, counted in (item, similarity) pairs kept (~150 bytes each, so ~150 MB
    at most; least recently used out)."""

    PAIRS = 1_000_000
    TTL_SECONDS = 600.0

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the dictionary of stores
        # One cache per vector store (an app's), so two apps in one process never share.
        self._stores: WeakKeyDictionary[VectorStore, Kept[list[tuple[str, float]]]] = (
            WeakKeyDictionary())

    def nearest(self, vectors: VectorStore, tenant_id: int, token: str | None,
                matrix: Matrix, n: int, where: dict[str, str] | None
                ) -> list[list[tuple[str, float]]]:
        if token is None:
            with vector_store_call():
                return vectors.nearest(tenant_id, "items", matrix, n, where)
        filter_key = tuple(sorted(where.items())) if where else ()
        keys = [(tenant_id, token, n, filter_key, row.tobytes()) for row in matrix]
        with self._lock:
            kept = self._stores.get(vectors)
            if kept is None:
                kept = self._stores[vectors] = Kept(self.PAIRS, self.TTL_SECONDS, len)
        found = [kept.get(key) for key in keys]
        missing = [i for i, hits in enumerate(found) if hits is None]
        if missing:
            with vector_store_call():
                asked = vectors.nearest(tenant_id, "items", matrix[missing], n, where)
            for i, hits in zip(missing, asked, strict=True):
                kept.put(keys[i], hits)
                found[i] = hits
        return [hits for hits in found if hits is not None]  # every one is found by now

    def clear(self) -> None:
        with self._lock:
            self._stores.clear()


NEIGHBOUR_CACHE = _NeighbourCache()


# Stores of what later steps work out from a facet's evidence (`evidence_with_items`) and
# its items' vectors under the same catalog token (`kept_with_evidence`).
_WITH_EVIDENCE: list[Kept[Any]] = []


def kept_with_evidence(size: int, seconds: float,
                       sizeof: Callable[[V], int] | None = None) -> Kept[V]:
    """A store for what a later step derives from a user's facets' evidence and its
    items' vectors under the catalog token: it holds as long as `_EVIDENCE`'s answers do
    when keyed as they are (the tenant, the user's row id and creation time, the token,
    the event ids), and `forget_kept` drops it with them."""
    kept: Kept[V] = Kept(size, seconds, sizeof)
    _WITH_EVIDENCE.append(kept)
    return kept


def forget_kept() -> None:
    """Drop the facets' kept neighbours, evidence and centroids (and what was derived
    from them), the item vectors kept under catalog tokens and the users' kept histories
    (benchmarks time requests without)."""
    NEIGHBOUR_CACHE.clear()
    _TOKEN_VECTORS.clear()
    _EVIDENCE.clear()
    _CENTROIDS.clear()
    _HISTORY.clear()
    for kept in _WITH_EVIDENCE:
        kept.clear()


def _widened(ask: int, short: Sequence[tuple[int, int]]) -> int:
    """How many neighbours the short facets ask for next, before the sure `ask + consumed`.

    A facet that got `got` unconsumed items of `ask` neighbours, with `quota` wanted,
    expects the same share unconsumed further out: it asks for what that share needs
    (twice over, for luck), at least twice `ask`. Asking for all `ask + consumed` at once
    is sure but costly for a heavy user: Chroma's query time grows with n (10 vectors at
    100k items: ~2 ms for 30 neighbours, ~22 ms for 530)."""
    need = 0
    for quota, got in short:
        free = max(got, 1)  # of `ask`; integer ceiling of 2 (quota - got) ask / free
        need = max(need, ask + -(-2 * (quota - got) * ask // free))
    return min(max(need, 2 * ask), MAX_ASK)


def retrieve(session: Session, vectors: VectorStore, tenant_id: int, matrix: Matrix,
             quotas: Sequence[int], consumed: set[str], category: str | None,
             floor: int) -> Retrieved:
    """Each facet's `quota` nearest unconsumed items, in one batched query.

    Each facet asks for twice its quota; a facet whose neighbours were mostly
    consumed asks again, wider (`_widened`), and, still short, for its quota past every
    consumed item, so heavy users are not left short.

    With a category, filtered search would be the obvious tool, but on Chroma's
    local backend it costs ~45 ms per query at 50k items, against ~1 ms per facet
    unfiltered. So facets over-fetch unfiltered and keep the items the catalog
    files under the category; a facet left with fewer than `floor` asks again for
    its 1,000 nearest, and only one still short (a rare category) asks Chroma with
    the filter.
    """
    ask = min(2 * max(quotas), MAX_ASK)
    wider = min(ask + len(consumed), MAX_ASK)
    token = catalog_token(session, tenant_id)
    rows: dict[str, CatalogRow] = {}
    off_category: set[str] = set()
    hits: list[list[tuple[str, float]]] = [[] for _ in quotas]

    def take(i: int) -> list[str]:
        return [item for item, _ in hits[i] if item not in consumed][:quotas[i]]

    queries = 0
    attempts: list[tuple[int, dict[str, str] | None]] = []
    if category is None:
        hits = NEIGHBOUR_CACHE.nearest(vectors, tenant_id, token, matrix, ask, None)
        queries = 1
        short = [i for i, row in enumerate(hits) if len(take(i)) < quotas[i] and len(row) >= ask]
        if short and wider > ask:
            guess = _widened(ask, [(quotas[i], len(take(i))) for i in short])
            if guess < wider:
                attempts.append((guess, None))
            attempts.append((wider, None))
    else:
        short = list(range(len(quotas)))
        over = min(ask * CATEGORY_OVERFETCH, MAX_ASK)
        attempts.append((over, None))
        if over < MAX_ASK:
            attempts.append((MAX_ASK, None))
        attempts.append((wider, {"category": category}))
    for n, where in attempts:
        if not short:
            break
        found = NEIGHBOUR_CACHE.nearest(vectors, tenant_id, token, matrix[short], n, where)
        queries += 1
        if category is not None and where is None:
            rows.update(catalog_rows(session, tenant_id,
                                     {i for row in found for i, _ in row if i not in rows}))
            off_category.update(i for row in found for i, _ in row
                                if i not in rows or rows[i].category != category)
            found = [[(i, sim) for i, sim in row if i not in off_category] for row in found]
        for i, row in zip(short, found, strict=True):
            hits[i] = row
        if category is not None:
            short = [i for i in short if len(take(i)) < min(quotas[i], floor)]
        else:
            short = [i for i in short if len(take(i)) < quotas[i] and len(hits[i]) >= n]
    seen_consumed = {item for row in hits for item, _ in row if item in consumed}
    return Retrieved(candidates=list(dict.fromkeys(i for n in range(len(quotas))
                                                   for i in take(n))),
                     rows=rows, consumed_seen=len(seen_consumed),
                     off_category=len(off_category), asked=ask, widened=queries > 1)


def item_vectors(vectors: VectorStore, tenant_id: int, versions: dict[str, str],
                 token: str | None = None) -> dict[str, npt.NDArray[np.float32]]:
    """The items' stored vectors (`VectorStore.vectors`); with the tenant's catalog
    token, those already read under it come from `_TOKEN_VECTORS` first."""
    if token is None:
        with vector_store_call():
            return vectors.vectors(tenant_id, "items", versions)
    return _TOKEN_VECTORS.vectors(vectors, tenant_id, token, versions)


class _TokenVectors:
    """Item vectors read under a tenant's catalog token, by item id.

    While the token holds, no item's version changes (every item write and indexing
    batch renews it), so a vector read once under it serves every later request by a
    plain lookup, without the vector store's per-item LRU step and version check (the
    largest per-candidate cost of a list at 100k items), and an item the store does not
    hold is not asked about again. One token per tenant and vector
    store; a new token starts empty. At most `ITEMS` vectors a tenant are kept here
    (~1.5 KB each with MiniLM; the arrays are the vector store's own, not copies)."""

    ITEMS = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: WeakKeyDictionary[
            VectorStore, dict[int, tuple[str, dict[str, npt.NDArray[np.float32] | None]]]] = (
            WeakKeyDictionary())

    def vectors(self, vectors: VectorStore, tenant_id: int, token: str,
                versions: dict[str, str]) -> dict[str, npt.NDArray[np.float32]]:
        with self._lock:
            tenants = self._stores.setdefault(vectors, {})
            entry = tenants.get(tenant_id)
            if entry is None or entry[0] != token:
                entry = tenants[tenant_id] = (token, {})
        kept = entry[1]
        found: dict[str, npt.NDArray[np.float32]] = {}
        missing: dict[str, str] = {}
        for item_id, version in versions.items():
            if item_id not in kept:
                missing[item_id] = version
            elif (vector := kept[item_id]) is not None:
                found[item_id] = vector
        if missing:
            with vector_store_call():
                read = vectors.vectors(tenant_id, "items", missing)
            found.update(read)
            if len(kept) < self.ITEMS:
                kept.update(read)
                # Not in the store under this token: not asked again until it changes.
                kept.update((i, None) for i in missing if i not in read)
        return found

    def clear(self) -> None:
        with self._lock:
            self._stores.clear()


_TOKEN_VECTORS = _TokenVectors()


# -- the user's own events and the tenant's models ---------------------------------------

# Newest first through ix_events_user_ts; reversed in Python.
_HISTORY_QUERY = (
    select(Event.event_id, Event.type, Event.ts, Event.item_id, Event.value)
    .where(Event.user_pk == bindparam("user"), Event.item_id.is_not(None))
    .order_by(Event.ts.desc(), Event.id.desc())
    .limit(MAX_HISTORY)
)


@dataclass(frozen=True)
class HistoryEvent:
    """One of the user's item events as a reason may cite it."""

    event_id: str
    type: str
    ts: datetime
    item_id: str
    value: float | None


@dataclass
class UserHistory:
    """The user's newest `MAX_HISTORY` item events, oldest first, as the models read them
    (`events`) and as reasons cite them (`cited`, same order), and every item they used."""

    events: list[UserEvent]
    cited: list[HistoryEvent]
    consumed: set[str]


def _utc(stored: str | datetime) -> datetime:
    """A `UTCDateTime` column's value as the driver returns it, as `UTCDateTime` reads it:
    SQLite's text (`2024-05-01 12:00:00.000000`, naive UTC) or a driver's datetime."""
    ts = datetime.fromisoformat(stored) if isinstance(stored, str) else stored
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _newest_events(session: Session, user: User) -> list[tuple[str, str, datetime, str,
                                                               float | None]]:
    """`_HISTORY_QUERY`'s rows, newest first; as the driver's SQL text where it can be
    (the same statement): SQLAlchemy's result rows and the `UTCDateTime` decorator took
    longer than SQLite's read of a heavy user's history, on every request."""
    connection = session.connection()
    paramstyle = _raw_paramstyle(session)
    if paramstyle is None:
        return [(event_id, type_, ts, str(item_id), value) for event_id, type_, ts, item_id,
                value in connection.execute(_HISTORY_QUERY, {"user": user.id})]
    mark = _mark(paramstyle)
    rows = connection.exec_driver_sql(
        "SELECT event_id, type, ts, item_id, value FROM events "
        f"WHERE user_pk = {mark} AND item_id IS NOT NULL "
        f"ORDER BY ts DESC, id DESC LIMIT {mark}", (user.id, MAX_HISTORY))
    return [(event_id, type_, _utc(ts), item_id, value)
            for event_id, type_, ts, item_id, value in rows]


# Every event of the user, counted, with the largest row id: `ix_events_user_ts` answers
# it without reading a row.
_EVENTS_STAMP_QUERY = select(func.count(), func.max(Event.id)).where(
    Event.user_pk == bindparam("user"))


class _HistoryCache:
    """Users' histories, kept between their requests, one store per database engine (two
    databases in one process, as in tests, never share one): events are only ever added
    (never changed; deleted only with the user, and the key holds the user's creation
    time as `_EVIDENCE`'s does), and any event added changes the user's event count and
    largest row id, so an unchanged stamp means an unchanged history. `TTL_SECONDS` at
    most; bounded in events and consumed items held (~300 bytes each, so ~30 MB at most
    per engine). The histories are shared: callers never change them."""

    SIZE = 100_000
    TTL_SECONDS = 600.0

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the dictionary of stores
        self._stores: WeakKeyDictionary[Engine, Kept[UserHistory]] = WeakKeyDictionary()

    def store(self, engine: Engine) -> Kept[UserHistory]:
        with self._lock:
            kept = self._stores.get(engine)
            if kept is None:
                kept = self._stores[engine] = Kept(
                    self.SIZE, self.TTL_SECONDS,
                    lambda history: max(1, len(history.events) + len(history.consumed)))
            return kept

    def clear(self) -> None:
        with self._lock:
            self._stores.clear()


_HISTORY = _HistoryCache()


def _events_stamp(session: Session, user: User) -> tuple[int, int | None]:
    """(how many events the user has, the largest event row id)."""
    connection = session.connection()
    paramstyle = _raw_paramstyle(session)
    if paramstyle is None:
        found = connection.execute(_EVENTS_STAMP_QUERY, {"user": user.id}).one()
    else:
        found = connection.exec_driver_sql(
            f"SELECT count(*), max(id) FROM events WHERE user_pk = {_mark(paramstyle)}",
            (user.id,)).one()
    return int(found[0]), None if found[1] is None else int(found[1])


def user_history(session: Session, user: User, rating_max: float) -> UserHistory:
    """The user's history (`UserHistory`), kept while their events are unchanged. The
    stamp is read first: an event stored meanwhile is read into a history kept under a
    stamp no later request sees again."""
    key = (user.tenant_id, user.id, user.created_at, rating_max, _events_stamp(session, user))
    store = _HISTORY.store(session.connection().engine)
    kept = store.get(key)
    if kept is None:
        kept = _read_history(session, user, rating_max)
        store.put(key, kept)
    return kept


def _read_history(session: Session, user: User, rating_max: float) -> UserHistory:
    events: list[UserEvent] = []
    cited: list[HistoryEvent] = []
    newest = _newest_events(session, user)
    for event_id, type_, ts, item_id, value in reversed(newest):
        events.append(UserEvent(item_id=item_id, ts=ts.timestamp(),
                                weight=event_weight(type_, value, rating_max),
                                event_id=event_id))
        cited.append(HistoryEvent(event_id, type_, ts, item_id, value))
    # Fewer than MAX_HISTORY rows are all the user's item events: no second query.
    consumed = ({e.item_id for e in events} if len(newest) < MAX_HISTORY
                else consumed_items(session, user))
    return UserHistory(events, cited, consumed)


def tenant_models(rt: ProfileRuntime, tenant_id: int) -> TenantModels | None:
    """The tenant's loaded artifact, or None (no registry, or nothing trained yet)."""
    if rt.models is None:
        return None
    found: TenantModels | None = rt.models.get(tenant_id)
    return found


def candidates_per_source(category: str | None) -> int:
    """More proposals from each source when a category will filter most of them out."""
    return CANDIDATES_PER_SOURCE * (CATEGORY_OVERFETCH if category is not None else 1)


def model_candidates(models: TenantModels, history: UserHistory, category: str | None,
                     at: datetime) -> dict[CandidateSource, dict[str, SourceHit]]:
    """Each trained source's proposals (`candidates_per_source`)."""
    return dict(models.candidates(history.events, candidates_per_source(category),
                                  history.consumed, at.timestamp()))


def kept_model_candidates(models: TenantModels, history: UserHistory, category: str | None,
                          at: datetime) -> dict[CandidateSource, dict[str, SourceHit]] | None:
    """`model_candidates` when the models keep their personal answer for this history,
    else None."""
    found = models.candidates_if_kept(history.events, candidates_per_source(category),
                                      history.consumed, at.timestamp())
    return None if found is None else dict(found)
