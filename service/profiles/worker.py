"""The in-process refresh worker: profiles catch up without anyone asking.

A user is due after `refresh_after_events` new events, or when their profile (or,
without one, the user) is older than `refresh_max_age_hours` and there is either
something unread or a profile whose decay should be recorded (no LLM call then).
Items whose vectors could not be written are retried on the same beat. A user
whose refresh fails waits longer each time (up to an hour) so one broken history
cannot keep the model busy.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from service.catalog.models import Item
from service.catalog.service import index_pending_items
from service.core.errors import ApiError
from service.profiles.models import Profile
from service.profiles.service import ProfileRuntime, refresh_profile
from service.users.models import User

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(hours=1)


def due_users(session: Session, rt: ProfileRuntime, at: datetime, limit: int = 50) -> list[int]:
    """Users whose profile should be refreshed now, most unread events first."""
    settings = rt.settings
    cutoff = at - timedelta(hours=settings.refresh_max_age_hours)
    last = func.coalesce(Profile.refreshed_at, User.created_at)
    query = (
        select(User.id).outerjoin(Profile, Profile.user_pk == User.id)
        .where(or_(
            User.events_since_refresh >= settings.refresh_after_events,
            (last < cutoff) & (User.stale | Profile.user_pk.is_not(None)),
        ))
        .order_by(User.events_since_refresh.desc(), User.id).limit(limit)
    )
    return list(session.scalars(query))


@dataclass
class RefreshWorker:
    sessions: sessionmaker[Session]
    rt: ProfileRuntime
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _retry_at: dict[int, tuple[datetime, timedelta]] = field(default_factory=dict)
    _train_retry_at: dict[int, tuple[datetime, timedelta]] = field(default_factory=dict)

    def run_once(self) -> dict[str, int]:
        """One pass; returns counts (tests call this directly)."""
        at = self.rt.clock()
        counts = {"refreshed": 0, "failed": 0, "items_indexed": 0}
        with self.sessions() as session:
            due = [pk for pk in due_users(session, self.rt, at)
                   if self._retry_at.get(pk, (at, timedelta()))[0] <= at]
            tenants = list(session.scalars(select(Item.tenant_id).where(or_(
                Item.indexed_hash.is_(None), Item.text_hash.is_(None),
                Item.indexed_hash != Item.text_hash)).distinct()))
        for user_pk in due:
            if self._stop.is_set():
                break
            with self.sessions() as session:
                user = session.get(User, user_pk)
                if user is None:  # deleted meanwhile
                    continue
                try:
                    refresh_profile(session, user, self.rt, trigger="worker")
                except ApiError as exc:
                    counts["failed"] += 1
                    _, wait = self._retry_at.get(user_pk, (at, timedelta(minutes=1)))
                    self._retry_at[user_pk] = (at + wait, min(wait * 2, MAX_BACKOFF))
                    log.warning("refresh of user %s failed: %s %s", user_pk, exc.code,
                                exc.message)
                else:
                    counts["refreshed"] += 1
                    self._retry_at.pop(user_pk, None)
        for tenant_id in tenants:
            with self.sessions() as session:
                indexed, _ = index_pending_items(session, tenant_id, self.rt.embedder,
                                                 self.rt.vectors)
                counts["items_indexed"] += indexed
        return counts

    def _loop(self) -> None:
        while not self._stop.wait(self.rt.settings.refresh_poll_seconds):
            try:
                self.run_once()
                self.train_once()
            except Exception:  # keep the worker alive; the next pass tries again
                log.exception("refresh worker pass failed")

    def train_once(self) -> dict[str, int]:
        """Train every tenant whose models are due (`service.training.jobs.tenants_due`).

        Minutes of CPU per tenant: it runs on this thread after the refreshes, and the
        registry of every process picks the new version up from its pointer file. A
        failed training keeps the last good models and waits longer before the next try.
        """
        from service.training.jobs import tenants_due, train_with_ranker

        at = self.rt.clock()
        counts = {"trained": 0, "train_failed": 0}
        with self.sessions() as session:
            due = [t for t in tenants_due(session, self.rt.settings, at)
                   if self._train_retry_at.get(t, (at, timedelta()))[0] <= at]
        for tenant_id in due:
            if self._stop.is_set():
                break
            with self.sessions() as session:
                try:
                    train_with_ranker(session, tenant_id, self.rt.settings, self.rt.vectors)
                except Exception:  # keep the worker alive; back off, the old models serve
                    counts["train_failed"] += 1
                    _, wait = self._train_retry_at.get(tenant_id, (at, timedelta(minutes=5)))
                    self._train_retry_at[tenant_id] = (at + wait, min(wait * 2, MAX_BACKOFF))
                    log.exception("training of tenant %s failed", tenant_id)
                else:
                    counts["trained"] += 1
                    self._train_retry_at.pop(tenant_id, None)
        return counts

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="refresh-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
