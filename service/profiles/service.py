"""Profile memory: named groups of new activity merged into a living profile, versioned.

A refresh groups the events no earlier refresh has read (deterministically, see
`service/summaries/grouping.py`), has the model name each group, turns every named
group into a facet whose evidence is the group's events, embeds it, and merges it
into the stored profile with the deterministic rules of `merge.py`. The merge, the
new version, the stale flag and the facet vectors are written in one short
transaction that holds the profile row lock (`SELECT ... FOR UPDATE`), so two
refreshes of one user serialize and neither loses the other's facets. The slow LLM
calls happen before, outside any transaction.
"""

from __future__ import annotations

import math
import threading
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, bindparam, cast, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.catalog.models import Item
from service.core.config import Settings
from service.core.db import insert_ignoring_conflicts
from service.core.errors import (
    ApiError,
    NotFound,
    embedder_unavailable,
    vector_store_unavailable,
)
from service.core.hashing import chunks
from service.core.schemas import DESCRIPTION_MAX, LABEL_MAX
from service.ingest.models import Event
from service.llm.runtime import LLMRuntime
from service.profiles.merge import (
    DecayRules,
    NewFacet,
    Polarity,
    ProfileFacet,
    decayed_strength,
    merge_profile,
)
from service.profiles.models import Profile, ProfileFacetRow, ProfileVersion
from service.summaries.activity import Activity
from service.summaries.grouping import YEAR
from service.summaries.injection import reads_as_instructions
from service.summaries.models import SummaryRun
from service.summaries.schemas import InterestSummary
from service.summaries.service import summarize_user, summary_failure
from service.users.models import User
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore

DECLARED_STRENGTH = 0.8  # what a user says about themselves counts nearly as much as it can


class UserLocks:
    """One refresh or edit per user at a time inside this process.

    Across processes the profile row lock does the same job; this one only spares
    a second, redundant LLM call when two requests for one user arrive together.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}

    @contextmanager
    def hold(self, user_pk: int) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(user_pk, threading.Lock())
        with lock:
            yield


@dataclass
class ProfileRuntime:
    """What refreshes and edits need besides a session; built once per app."""

    settings: Settings
    llm: LLMRuntime
    embedder: Embedder
    vectors: VectorStore
    clock: Callable[[], datetime]
    locks: UserLocks = field(default_factory=UserLocks)
    models: Any = None  # the app's service.training.store.ModelRegistry (recommend reads it)

    @property
    def rules(self) -> DecayRules:
        return rules_from(self.settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProfileRuntime:
        """What a process outside the API (a CLI command, a worker, a Ray task) refreshes
        with: its own LLM runtime (close it with `rt.llm.close()`), embedder and vector
        store, on the wall clock."""
        from service.core.db import utcnow
        from service.vectors.embeddings import embedder_for
        from service.vectors.store import client_for

        return cls(settings, LLMRuntime(settings), embedder_for(settings),
                   VectorStore(client_for(settings), settings.chroma_collection_prefix),
                   utcnow)


def rules_from(settings: Settings) -> DecayRules:
    return DecayRules(
        half_life_short=timedelta(days=settings.half_life_short_days),
        half_life_long=timedelta(days=settings.half_life_long_days),
        match_threshold=settings.facet_match_threshold,
        reinforcement=settings.reinforcement_rate,
        promote_after=settings.promote_after_reinforcements,
        promote_span=timedelta(days=settings.promote_span_days),
        archive_below=settings.archive_below,
        max_evidence=settings.max_facet_evidence,
    )


FACET_TEXT_TAGS = 5


def facet_text(label: str, description: str, tags: Sequence[str] = ()) -> str:
    """What a facet's vector encodes: label, description and the group's top tags.

    Never titles or years, so that retrieval follows the topic rather than one film.
    """
    topics = [t for t in tags if not YEAR.search(t)][:FACET_TEXT_TAGS]
    if not topics:
        return f"{label}. {description}" if description else label
    parts = [label, description.rstrip(". "), "Topics: " + ", ".join(topics)]
    return ". ".join(p for p in parts if p)


def pack(vector: Sequence[float]) -> bytes:
    return array("f", vector).tobytes()


def unpack(blob: bytes) -> tuple[float, ...]:
    values = array("f")
    values.frombytes(blob)
    return tuple(values)


def to_facet(row: ProfileFacetRow, with_embedding: bool = True) -> ProfileFacet:
    """The merge's view of a row; reads skip unpacking the vector."""
    return ProfileFacet(
        facet_id=row.facet_id, label=row.label, description=row.description,
        strength=row.strength, strength_at=row.strength_at,
        horizon="long" if row.horizon == "long" else "short",
        polarity="avoid" if row.polarity == "avoid" else "like",
        evidence=tuple(row.evidence), embedding=unpack(row.embedding) if with_embedding else (),
        first_seen=row.first_seen, last_reinforced=row.last_reinforced,
        reinforcements=row.reinforcements, pinned=row.pinned, suppressed=row.suppressed,
        archived=row.archived,
    )


def _columns(f: ProfileFacet) -> dict[str, Any]:
    return {
        "label": f.label, "description": f.description, "strength": f.strength,
        "strength_at": f.strength_at, "horizon": f.horizon, "polarity": f.polarity,
        "evidence": list(f.evidence), "embedding": pack(f.embedding), "first_seen": f.first_seen,
        "last_reinforced": f.last_reinforced, "reinforcements": f.reinforcements,
        "pinned": f.pinned, "suppressed": f.suppressed, "archived": f.archived,
    }


def snapshot(f: ProfileFacet, at: datetime, rules: DecayRules) -> dict[str, Any]:
    """A facet as a version records it: its strength decayed to the version's time."""
    return {
        "facet_id": f.facet_id, "label": f.label, "description": f.description,
        "strength": round(decayed_strength(f, at, rules), 6), "horizon": f.horizon,
        "polarity": f.polarity, "evidence": list(f.evidence),
        "reinforcements": f.reinforcements, "pinned": f.pinned, "suppressed": f.suppressed,
        "archived": f.archived, "first_seen": f.first_seen.isoformat(),
        "last_reinforced": f.last_reinforced.isoformat(),
    }


def _new_facet_id(_: NewFacet) -> str:
    return "f" + uuid.uuid4().hex[:20]


@dataclass
class RefreshInput:
    """What one refresh brings to the merge (empty for a decay-only refresh)."""

    new: list[NewFacet] = field(default_factory=list)
    run: SummaryRun | None = None
    activity: Activity | None = None
    seen_pending: int = 0


def refresh_profile(
    session: Session, user: User, rt: ProfileRuntime, trigger: str = "refresh",
    at: datetime | None = None,
) -> ProfileVersion:
    """Group and name new activity and merge it into the profile; returns the new version.

    With no event newer than what the last refresh read, no LLM is called: the
    version records decay (and archival) only. A failed summary raises 503 and
    changes nothing stored; the user stays stale.
    """
    with rt.locks.hold(user.id):
        at = at or rt.clock()
        profile = session.get(Profile, user.id, populate_existing=True)
        read_through = profile.read_through_event if profile else 0
        unread = session.scalar(select(Event.id).where(
            Event.user_pk == user.id, Event.id > read_through).limit(1))
        if profile is not None and profile.version > 0 and unread is None:
            return commit_merge(session, user, rt, at, trigger,
                                RefreshInput(seen_pending=user.events_since_refresh))
        result = summarize_user(session, user, rt.llm, rt.settings, rt.embedder, rt.vectors,
                                read_through=read_through, at=at)
        if result.run.status != "ok" or result.run.summary is None:
            raise summary_failure(result.run)
        summary = InterestSummary.model_validate(result.run.summary)
        new = new_facets(summary, result.activity, read_through, rt.embedder,
                         rt.settings.rating_max)
        return commit_merge(session, user, rt, at, trigger, RefreshInput(
            new=new, run=result.run, activity=result.activity,
            seen_pending=result.seen_pending))


def refresh_many(sessions: sessionmaker[Session], user_pks: Sequence[int], rt: ProfileRuntime,
                 trigger: str, *, desc: str, progress: bool = True,
                 ) -> tuple[list[str], list[str]]:
    """Refresh each user in a session of its own, with a progress bar.

    A failed refresh changes nothing for that user (see `refresh_profile`) and does not
    stop the others. Returns the user ids refreshed and one "user: code: message" line
    per failure.
    """
    from tqdm import tqdm

    refreshed: list[str] = []
    failures: list[str] = []
    for user_pk in tqdm(user_pks, desc=desc, unit="user", disable=not progress):
        with sessions() as session:
            user = session.get(User, user_pk)
            if user is None:
                continue
            try:
                refresh_profile(session, user, rt, trigger=trigger)
            except ApiError as exc:
                session.rollback()
                failures.append(f"{user.user_id}: {exc.code}: {exc.message}")
            else:
                refreshed.append(user.user_id)
    return refreshed, failures


def new_facets(
    summary: InterestSummary, activity: Activity, read_through: int, embedder: Embedder,
    rating_max: float = 5.0,
) -> list[NewFacet]:
    """One facet per named group, plus one per new declaration.

    A group's facet cites the group's events (exact by construction: groups are built
    from unread events only) and takes its polarity from the group. Its strength n is
    the geometric mean of how well its events back it (`evidence_support`) and its
    share of the new events read: a single view that is all the user did is weak, and
    so is a well-backed group among many (a handful of low ratings beside many high ones
    makes a weak avoid-facet).

    Cold start: "I like jazz and hiking" always seeds a facet in the user's own words,
    unless the words read as instructions to a model.
    """
    by_id = {e.event_id: e for e in activity.events}
    drafts: list[tuple[str, str, tuple[str, ...], float, Polarity, tuple[str, ...]]] = []
    for f in summary.facets:
        cited = [by_id[ev] for ev in f.evidence if ev in by_id and by_id[ev].id > read_through]
        if not cited:
            continue
        support = evidence_support(cited, f.polarity, rating_max)
        share = f.group.share if f.group is not None else f.strength
        tags = (*f.group.top_tags, *f.group.top_categories) if f.group else ()
        drafts.append((f.label, f.description, tags, math.sqrt(support * share), f.polarity,
                       tuple(e.event_id for e in cited)))
    for e in activity.events:
        if (e.type == "declared" and e.text and e.id > read_through
                and not reads_as_instructions(e.text)):
            words = " ".join(e.text.split())
            polarity: Polarity = "avoid" if e.value is not None and e.value < 0 else "like"
            drafts.append((_clip(words, LABEL_MAX), _clip(f"Declared: {words}", DESCRIPTION_MAX),
                           (), DECLARED_STRENGTH, polarity, (e.event_id,)))
    vectors = embedder.embed([facet_text(label, desc, tags) for label, desc, tags, *_ in drafts])
    return [
        NewFacet(label=label, description=desc, strength=strength, polarity=polarity,
                 evidence=evidence, embedding=tuple(vec))
        for (label, desc, _, strength, polarity, evidence), vec in zip(drafts, vectors,
                                                                        strict=True)
    ]


SUPPORT_FULL = 5.0  # this many agreeing events give full support
_AGREEING: dict[str, tuple[float, float]] = {  # event type -> (like, avoid) weight
    "purchase": (1.0, 0.0), "like": (1.0, 0.0), "dislike": (0.0, 1.0), "skip": (0.0, 0.5),
    "view": (0.5, 0.0), "click": (0.5, 0.0), "search": (0.5, 0.0), "post": (0.5, 0.0),
}


def evidence_support(events: Sequence[Event], polarity: Polarity, rating_max: float) -> float:
    """How strongly the cited events back a facet of this polarity, in [0, 1].

    Events that agree with the polarity count (a rating at or above 70% of the scale, a
    like or purchase for `like`; a rating at or below 50%, a dislike or skip for
    `avoid`; views, clicks, searches and posts half for `like`); events that contradict
    it count nothing. Full support at SUPPORT_FULL agreeing events.
    """
    total = 0.0
    for e in events:
        if e.type == "rating":
            if e.value is None or rating_max <= 0:
                continue
            share = e.value / rating_max
            agrees = share >= 0.7 if polarity == "like" else share <= 0.5
            total += 1.0 if agrees else 0.0
        else:
            like, avoid = _AGREEING.get(e.type, (0.0, 0.0))
            total += like if polarity == "like" else avoid
    return min(1.0, total / SUPPORT_FULL)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def lock_profile(session: Session, user: User, at: datetime) -> Profile:
    """The user's profile row, created if missing, locked until the transaction ends."""
    session.execute(insert_ignoring_conflicts(session, Profile).values(
        user_pk=user.id, tenant_id=user.tenant_id, version=0, narrative="",
        read_through_event=0, updated_at=at))
    return session.scalars(
        select(Profile).where(Profile.user_pk == user.id).with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def facet_rows(session: Session, user_pk: int) -> list[ProfileFacetRow]:
    return list(session.scalars(
        select(ProfileFacetRow).where(ProfileFacetRow.user_pk == user_pk)
        .order_by(ProfileFacetRow.id).execution_options(populate_existing=True)
    ))


def commit_merge(
    session: Session, user: User, rt: ProfileRuntime, at: datetime, trigger: str,
    given: RefreshInput,
) -> ProfileVersion:
    rules = rt.rules
    for attempt in range(3):
        try:
            profile = lock_profile(session, user, at)
            rows = facet_rows(session, user.id)
            merged = merge_profile([to_facet(r) for r in rows], given.new, at, rules,
                                   _new_facet_id)
            by_id = {r.facet_id: r for r in rows}
            for f in merged:
                row = by_id.get(f.facet_id)
                if row is None:
                    session.add(ProfileFacetRow(tenant_id=user.tenant_id, user_pk=user.id,
                                                facet_id=f.facet_id, **_columns(f)))
                else:
                    for name, value in _columns(f).items():
                        setattr(row, name, value)
            version = _write_version(session, user, profile, merged, at, trigger, given, rules)
            if given.seen_pending:
                # Events that arrived during the call keep the user stale.
                # One statement: both right-hand sides read the counter before the update.
                remaining = User.events_since_refresh - given.seen_pending
                session.execute(update(User).where(User.id == user.id).values(
                    events_since_refresh=remaining, stale=remaining > 0))
            session.flush()
            sync_facet_vectors(rt.vectors, user, merged)
            session.commit()
            return version
        except IntegrityError:
            # A concurrent first refresh created the same version number (SQLite has
            # no row lock); start again from what it wrote.
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _write_version(
    session: Session, user: User, profile: Profile, facets: Sequence[ProfileFacet],
    at: datetime, trigger: str, given: RefreshInput, rules: DecayRules,
) -> ProfileVersion:
    run, activity = given.run, given.activity
    summary = InterestSummary.model_validate(run.summary) if run and run.summary else None
    if summary is not None and summary.narrative:
        profile.narrative = summary.narrative
    if activity is not None and activity.events:
        profile.read_through_event = max(profile.read_through_event,
                                         max(e.id for e in activity.events))
    profile.version += 1
    profile.updated_at = at
    if trigger != "edit":
        profile.refreshed_at = at
    first = activity.first if activity else None
    last = activity.last if activity else None
    version = ProfileVersion(
        tenant_id=user.tenant_id, user_pk=user.id, version=profile.version, trigger=trigger,
        at=at, facets=[snapshot(f, at, rules) for f in facets], narrative=profile.narrative,
        summary_run_id=run.id if run else None, model=run.model if run else None,
        prompt_name=run.prompt_name if run else None,
        prompt_version=run.prompt_version if run else None,
        prompt_tokens=run.prompt_tokens if run else 0,
        output_tokens=run.output_tokens if run else 0,
        first_event_id=first.event_id if first else None,
        last_event_id=last.event_id if last else None,
        first_event_ts=first.ts if first else None, last_event_ts=last.ts if last else None,
    )
    session.add(version)
    return version


def sync_facet_vectors(vectors: VectorStore, user: User, facets: Sequence[ProfileFacet]) -> None:
    """Active facets in the store, archived and suppressed ones out of it."""
    active = [f for f in facets if not f.archived and not f.suppressed]
    gone = [f.facet_id for f in facets if f.archived or f.suppressed]
    try:
        vectors.upsert(user.tenant_id, "facets", [f.facet_id for f in active],
                       [f.embedding for f in active],
                       [{"user_id": user.user_id, "polarity": f.polarity} for f in active])
        vectors.delete(user.tenant_id, "facets", gone)
    except Exception as exc:  # any client error: the SQL transaction rolls back
        raise vector_store_unavailable(exc) from exc


@dataclass
class FacetEdit:
    pinned: bool | None = None
    suppressed: bool | None = None
    label: str | None = None
    description: str | None = None


def _locked_facet(
    session: Session, user: User, facet_id: str, at: datetime
) -> tuple[Profile, list[ProfileFacetRow], ProfileFacetRow]:
    """The profile (locked), all its facet rows, and the one a user edit is about."""
    profile = lock_profile(session, user, at)
    rows = facet_rows(session, user.id)
    row = next((r for r in rows if r.facet_id == facet_id), None)
    if row is None:
        session.rollback()
        raise NotFound("facet_not_found", f"No facet {facet_id!r} in this user's profile.")
    return profile, rows, row


def edit_facet(
    session: Session, user: User, facet_id: str, edit: FacetEdit, rt: ProfileRuntime
) -> ProfileFacetRow:
    """Apply a user's edit; it holds across later refreshes (the merge keeps it)."""
    with rt.locks.hold(user.id):
        at = rt.clock()
        profile, rows, row = _locked_facet(session, user, facet_id, at)
        rules = rt.rules
        if edit.pinned is not None and edit.pinned != row.pinned:
            # Pinning freezes today's strength; unpinning lets it decay from today.
            row.strength = decayed_strength(to_facet(row), at, rules)
            row.strength_at = at
            row.pinned = edit.pinned
            if edit.pinned:
                row.archived = False
        if edit.suppressed is not None:
            row.suppressed = edit.suppressed
        label = edit.label if edit.label is not None else row.label
        description = edit.description if edit.description is not None else row.description
        if (label, description) != (row.label, row.description):
            row.label, row.description = label, description
            try:
                row.embedding = pack(rt.embedder.embed([facet_text(label, description)])[0])
            except Exception as exc:  # the embedder is a remote service in production
                session.rollback()
                raise embedder_unavailable("the edited facet", exc) from exc
        row.edited_at = at
        facets = [to_facet(r) for r in rows]
        _write_version(session, user, profile, facets, at, "edit", RefreshInput(), rules)
        session.flush()
        sync_facet_vectors(rt.vectors, user, [to_facet(row)])
        session.commit()
        return row


def delete_facet(session: Session, user: User, facet_id: str, rt: ProfileRuntime) -> None:
    """Remove a facet now (history keeps it). Activity may bring it back; suppress to stop that."""
    with rt.locks.hold(user.id):
        at = rt.clock()
        profile, rows, row = _locked_facet(session, user, facet_id, at)
        session.delete(row)
        remaining = [to_facet(r) for r in rows if r is not row]
        _write_version(session, user, profile, remaining, at, "edit", RefreshInput(), rt.rules)
        session.flush()
        try:
            rt.vectors.delete(user.tenant_id, "facets", [facet_id])
        except Exception as exc:  # any client error: the SQL transaction rolls back
            session.rollback()
            raise vector_store_unavailable(exc) from exc
        session.commit()


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
    for part in chunks(sorted(event_ids)):
        rows = session.execute(_EVIDENCE_QUERY,
                               {"tenant": user.tenant_id, "user": user.id, "ids": part})
        for event_id, type_, ts, item_id, text, title, version, category, tags in rows:
            found[event_id] = EvidenceEvent(event_id, type_, ts, item_id, title, text)
            if item_id is not None and title is not None:
                items[item_id] = EvidenceItem(title, version or "", category, tags)
    return found, items


def versions(session: Session, user: User, limit: int,
             before: int | None = None) -> list[ProfileVersion]:
    query = select(ProfileVersion).where(ProfileVersion.user_pk == user.id)
    if before is not None:
        query = query.where(ProfileVersion.version < before)
    return list(session.scalars(query.order_by(ProfileVersion.version.desc()).limit(limit)))


def forget_profile(session: Session, user: User, vectors: VectorStore) -> None:
    """Remove the user's facet vectors, then their profile rows (the caller commits).

    Vectors go first: if the store is down the request fails and nothing is deleted,
    so a retry can still find every vector to remove.
    """
    facet_ids = list(session.scalars(
        select(ProfileFacetRow.facet_id).where(ProfileFacetRow.user_pk == user.id)))
    try:
        vectors.delete(user.tenant_id, "facets", facet_ids)
    except Exception as exc:  # any client error
        raise vector_store_unavailable(exc) from exc
    session.execute(delete(ProfileVersion).where(ProfileVersion.user_pk == user.id))
    session.execute(delete(ProfileFacetRow).where(ProfileFacetRow.user_pk == user.id))
    session.execute(delete(Profile).where(Profile.user_pk == user.id))
