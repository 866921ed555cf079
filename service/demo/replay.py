"""The demo users' histories replayed session by session, each session's ratings
followed by a profile refresh dated after it, so the inspector's timelines show how each
user's interests moved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from service.datasets.types import Interaction
from service.demo.sessions import REFRESH_AFTER, demo_sessions, demo_user_id, rating_events
from service.demo.state import DemoLoad, ProgressHook
from service.ingest.models import Event
from service.ingest.service import ingest_events
from service.profiles.models import Profile
from service.profiles.runtime import ProfileRuntime
from service.profiles.service import refresh_many
from service.users.models import User


def _fixed_clock(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def replay_profiles(sessions: sessionmaker[Session], tenant_id: int, result: DemoLoad,
                      rt: ProfileRuntime, users: Sequence[str],
                      histories: dict[str, list[Interaction]], newest_at: datetime,
                      progress: bool, on_progress: ProgressHook) -> None:
    """Each demo user's history replayed session by session (`demo_sessions`): a session's
    ratings go in, then the profile is refreshed as of REFRESH_AFTER its last rating (the
    last session's at load time), so each session leaves a profile version.

    Resumable: a session whose next one is already stored is skipped (a later refresh
    reads its events); a stored rating is not sent again, and the rest keep their gaps to
    the stored ones; a user is refreshed only with unread events or no profile yet. A
    failed refresh stops that user's replay (its later sessions stay out, so no refresh
    reads ratings newer than its own time) and the next load goes on from there.
    """
    todo = sorted(users, key=demo_user_id)
    for n, user in enumerate(tqdm(todo, desc="demo profiles", unit="user",
                                  disable=not progress)):
        on_progress("profiles", n, len(todo))
        user_id = demo_user_id(user)
        events = rating_events(user, histories[user], newest_at)
        with sessions() as session:
            stored = dict(session.execute(
                select(Event.event_id, Event.ts).join(User, User.id == Event.user_pk)
                .where(User.tenant_id == tenant_id, User.user_id == user_id)).all())
        # An earlier load dated the stored ratings: the rest keep their gaps to those.
        anchor = next((e for e in events if e["event_id"] in stored), None)
        if anchor is not None:
            shift = stored[anchor["event_id"]] - datetime.fromisoformat(anchor["ts"])
            events = [{**e, "ts": (datetime.fromisoformat(e["ts"]) + shift).isoformat()}
                      for e in events]
        parts = demo_sessions(events)
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            if not last and any(e["event_id"] in stored for e in parts[k + 1]):
                continue
            with sessions() as session:
                missing = [e for e in part if e["event_id"] not in stored]
                if missing:
                    result.events += ingest_events(session, tenant_id, missing,
                                                   rt.settings).accepted
                found = session.execute(
                    select(User.id, User.stale, Profile.version)
                    .outerjoin(Profile, Profile.user_pk == User.id)
                    .where(User.tenant_id == tenant_id, User.user_id == user_id)).first()
            if found is None or not (found.stale or not found.version):
                continue
            at = (rt.clock() if last
                  else datetime.fromisoformat(part[-1]["ts"]) + REFRESH_AFTER)
            refreshed, failures = refresh_many(
                sessions, [found.id], replace(rt, clock=_fixed_clock(at)), "demo",
                desc="demo profiles", progress=False)
            result.refreshed += [u for u in refreshed if u not in result.refreshed]
            result.failures += failures
            if failures:
                break
    on_progress("profiles", len(todo), len(todo))
