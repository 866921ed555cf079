"""Writing the profile: the merge, its version and the stale flag in one short transaction.

The transaction holds the profile row lock (`SELECT ... FOR UPDATE`), so two refreshes
of one user serialize and neither loses the other's facets; facet vectors are columns of
the facet rows, written with them. The slow LLM calls happen before, outside any
transaction (`service.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from service.core.db import insert_ignoring_conflicts
from service.profiles.merge import (
    DecayRules,
    NewFacet,
    ProfileFacet,
    decayed_strength,
    merge_profile,
)
from service.profiles.models import Profile, ProfileFacetRow, ProfileVersion
from service.profiles.reads import facet_rows, pack, to_facet
from service.summaries.activity import Activity
from service.summaries.models import SummaryRun
from service.summaries.schemas import InterestSummary
from service.users.models import User

MERGE_ATTEMPTS = 3


@dataclass
class RefreshInput:
    """What one refresh brings to the merge (empty for a decay-only refresh)."""

    new: list[NewFacet] = field(default_factory=list)
    run: SummaryRun | None = None
    activity: Activity | None = None
    seen_pending: int = 0


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


def lock_profile(session: Session, user: User, at: datetime) -> Profile:
    """The user's profile row, created if missing, locked until the transaction ends."""
    session.execute(insert_ignoring_conflicts(session, Profile).values(
        user_pk=user.id, tenant_id=user.tenant_id, version=0, narrative="",
        read_through_event=0, updated_at=at))
    return session.scalars(
        select(Profile).where(Profile.user_pk == user.id).with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def commit_merge(
    session: Session, user: User, rules: DecayRules, at: datetime, trigger: str,
    given: RefreshInput,
) -> ProfileVersion:
    """Merge `given` into the stored profile and commit the new version.

    A concurrent first refresh can create the same version number (SQLite has no row
    lock): the IntegrityError rolls back and the merge starts again from what that
    refresh wrote, `MERGE_ATTEMPTS` times in all before it is raised.
    """
    retrying = Retrying(stop=stop_after_attempt(MERGE_ATTEMPTS),
                        retry=retry_if_exception_type(IntegrityError),
                        after=lambda _: session.rollback(), reraise=True)
    return retrying(_merge, session, user, rules, at, trigger, given)


def _merge(
    session: Session, user: User, rules: DecayRules, at: datetime, trigger: str,
    given: RefreshInput,
) -> ProfileVersion:
    profile = lock_profile(session, user, at)
    rows = facet_rows(session, user.id)
    merged = merge_profile([to_facet(r) for r in rows], given.new, at, rules, _new_facet_id)
    by_id = {r.facet_id: r for r in rows}
    for f in merged:
        row = by_id.get(f.facet_id)
        if row is None:
            session.add(ProfileFacetRow(tenant_id=user.tenant_id, user_pk=user.id,
                                        facet_id=f.facet_id, **_columns(f)))
        else:
            for name, value in _columns(f).items():
                setattr(row, name, value)
    version = write_version(session, user, profile, merged, at, trigger, given, rules)
    if given.seen_pending:
        # Events that arrived during the call keep the user stale.
        # One statement: both right-hand sides read the counter before the update.
        remaining = User.events_since_refresh - given.seen_pending
        session.execute(update(User).where(User.id == user.id).values(
            events_since_refresh=remaining, stale=remaining > 0))
    session.commit()
    return version


def write_version(
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
