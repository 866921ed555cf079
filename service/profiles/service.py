"""Refreshing profiles: named groups of new activity merged into a living profile.

A refresh groups the events no earlier refresh has read (deterministically, see
`service/summaries/grouping.py`), has the model name each group, drafts a facet from
every named group whose evidence is the group's events (`drafting.py`), and merges the
facets into the stored profile with the deterministic rules of `merge.py`, writing a new
version in one short locked transaction (`store.py`). The slow LLM calls happen before,
outside any transaction. Edits are in `edits.py`, reads in `reads.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.core.errors import ApiError
from service.ingest.models import Event
from service.profiles.drafting import new_facets
from service.profiles.models import Profile, ProfileVersion
from service.profiles.runtime import ProfileRuntime
from service.profiles.store import RefreshInput, commit_merge
from service.summaries.schemas import InterestSummary
from service.summaries.service import summarize_user, summary_failure
from service.users.models import User


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
            return commit_merge(session, user, rt.rules, at, trigger,
                                RefreshInput(seen_pending=user.events_since_refresh))
        result = summarize_user(session, user, rt.llm, rt.settings, rt.embedder, rt.vectors,
                                read_through=read_through, at=at)
        if result.run.status != "ok" or result.run.summary is None:
            raise summary_failure(result.run)
        summary = InterestSummary.model_validate(result.run.summary)
        new = new_facets(summary, result.activity, read_through, rt.embedder,
                         rt.settings.rating_max)
        return commit_merge(session, user, rt.rules, at, trigger, RefreshInput(
            new=new, run=result.run, activity=result.activity,
            seen_pending=result.seen_pending))


def refresh_many(sessions: sessionmaker[Session], user_pks: Sequence[int], rt: ProfileRuntime,
                 trigger: str, *, desc: str, progress: bool = True,
                 refresh: Callable[[Session, User], object] | None = None,
                 ) -> tuple[list[str], list[str]]:
    """Refresh each user in a session of its own, with a progress bar.

    `refresh` runs one user's refresh (default `refresh_profile` with `trigger`; the
    worker passes its job-leasing `refresh_now`). A failed refresh changes nothing for
    that user (see `refresh_profile`) and does not stop the others; a user forgotten
    since the list was made is passed over. Returns the user ids refreshed and one
    "user: code: message" line per failure.
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
                if refresh is None:
                    refresh_profile(session, user, rt, trigger=trigger)
                else:
                    refresh(session, user)
            except ApiError as exc:
                session.rollback()
                failures.append(f"{user.user_id}: {exc.code}: {exc.message}")
            else:
                refreshed.append(user.user_id)
    return refreshed, failures
