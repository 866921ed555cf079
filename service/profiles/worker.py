"""The refresh and training worker: profiles and models catch up without anyone asking.

A user is due after `refresh_after_events` new events, or when their profile (or,
without one, the user) is older than `refresh_max_age_hours` and there is either
something unread or a profile whose decay should be recorded (no LLM call then). A
tenant is due for training as `service.training.jobs.tenants_due` says.

Each pass queues a job per due user or tenant (once: an open job is not queued again)
and then works through the runnable jobs, each leased to one worker
(`service.jobs.service`). The same code runs in a thread of the API process
(`refresh_worker`, the SQLite default) and as `interest-tracker worker` processes beside
the API (PostgreSQL); any number of them can share one database. A job re-checks its
trigger when it runs, so a trigger queued again just after another worker served it
is skipped rather than run twice. Items whose vectors could not be written are retried
on the same beat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from service.catalog.models import Item
from service.catalog.service import index_pending_items
from service.core.errors import ApiError
from service.jobs.models import Job
from service.jobs.service import (
    JobPolicy,
    NewJob,
    complete,
    enqueue,
    fail,
    lease_next,
    renew,
    worker_id,
)
from service.profiles.models import Profile
from service.profiles.service import ProfileRuntime, refresh_profile
from service.users.models import User

log = logging.getLogger(__name__)

Refresher = Callable[[Session, User, ProfileRuntime], Any]


def _refresh_by_worker(session: Session, user: User, rt: ProfileRuntime) -> Any:
    return refresh_profile(session, user, rt, trigger="worker")


def _due_query(rt: ProfileRuntime, at: datetime, *columns: Any) -> Any:
    settings = rt.settings
    cutoff = at - timedelta(hours=settings.refresh_max_age_hours)
    last = func.coalesce(Profile.refreshed_at, User.created_at)
    return (
        select(*columns).outerjoin(Profile, Profile.user_pk == User.id)
        .where(or_(
            User.events_since_refresh >= settings.refresh_after_events,
            (last < cutoff) & (User.stale | Profile.user_pk.is_not(None)),
        ))
        .order_by(User.events_since_refresh.desc(), User.id)
    )


def due_users(session: Session, rt: ProfileRuntime, at: datetime, limit: int = 50,
              among: Sequence[int] | None = None) -> list[int]:
    """Users whose profile should be refreshed now, most unread events first."""
    query = _due_query(rt, at, User.id).limit(limit)
    if among is not None:
        query = query.where(User.id.in_(among))
    return list(session.scalars(query))


@dataclass
class RefreshWorker:
    sessions: sessionmaker[Session]
    rt: ProfileRuntime
    refresher: Refresher = _refresh_by_worker
    owner: str = field(default_factory=worker_id)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def policy(self) -> JobPolicy:
        return JobPolicy.from_settings(self.rt.settings)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def schedule_refreshes(self, limit: int = 500) -> int:
        """Queue a refresh job per due user; returns how many were new."""
        at = self.rt.clock()
        with self.sessions() as session:
            due = session.execute(_due_query(self.rt, at, User.id, User.tenant_id).limit(limit))
            jobs = [NewJob("refresh", tenant_id, user_pk) for user_pk, tenant_id in due]
            return enqueue(session, jobs, at, self.policy)

    def schedule_training(self) -> int:
        """Queue a training job per tenant whose models are due; returns how many were new."""
        from service.training.jobs import tenants_due

        at = self.rt.clock()
        with self.sessions() as session:
            jobs = [NewJob("train", tenant_id)
                    for tenant_id in tenants_due(session, self.rt.settings, at)]
            return enqueue(session, jobs, at, self.policy)

    def run_once(self) -> dict[str, int]:
        """One refresh pass: queue what is due, run every runnable refresh job, index
        items left unindexed; returns counts (tests call this directly)."""
        self.schedule_refreshes()
        done = self.work(("refresh",))
        counts = {"refreshed": done["ran"], "failed": done["failed"], "items_indexed": 0}
        with self.sessions() as session:
            tenants = list(session.scalars(select(Item.tenant_id).where(or_(
                Item.indexed_hash.is_(None), Item.text_hash.is_(None),
                Item.indexed_hash != Item.text_hash)).distinct()))
        for tenant_id in tenants:
            with self.sessions() as session:
                indexed, _ = index_pending_items(session, tenant_id, self.rt.embedder,
                                                 self.rt.vectors)
                counts["items_indexed"] += indexed
        return counts

    def train_once(self) -> dict[str, int]:
        """One training pass: queue the tenants whose models are due and train them.

        Minutes of CPU per tenant; the registry of every process picks the new version
        up from its pointer file. A failed training keeps the last good models and is
        retried after its back-off.
        """
        self.schedule_training()
        done = self.work(("train",))
        return {"trained": done["ran"], "train_failed": done["failed"]}

    def work(self, kinds: Sequence[str]) -> dict[str, int]:
        """Lease and run jobs of these kinds until none is runnable (or the worker stops).

        Counts: ran, skipped (its trigger no longer held), failed (this attempt).
        """
        counts = {"ran": 0, "skipped": 0, "failed": 0}
        while not self._stop.is_set():
            with self.sessions() as session:
                job = lease_next(session, self.owner, self.rt.clock(), self.policy, kinds)
            if job is None:
                break
            counts[self._run(job)] += 1
        return counts

    def _run(self, job: Job) -> str:
        try:
            with self._heartbeat(job.id), self.sessions() as session:
                outcome = self._refresh(session, job) if job.kind == "refresh" \
                    else self._train(session, job)
        except Exception as exc:  # the job is retried later; the worker goes on
            if isinstance(exc, ApiError):
                error = f"{exc.code}: {exc.message}"
                log.warning("%s job %s failed: %s", job.kind, job.id, error)
            else:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("%s job %s failed", job.kind, job.id)
            with self.sessions() as session:
                fail(session, job.id, self.owner, self.rt.clock(), error, self.policy)
            return "failed"
        with self.sessions() as session:
            if not complete(session, job.id, self.owner, self.rt.clock(), outcome):
                log.warning("%s job %s finished after its lease was lost", job.kind, job.id)
        return outcome

    def _refresh(self, session: Session, job: Job) -> str:
        assert job.user_pk is not None
        user = session.get(User, job.user_pk)
        if user is None or not due_users(session, self.rt, self.rt.clock(),
                                         among=[job.user_pk]):
            return "skipped"  # deleted, or another worker served this trigger
        try:
            self.refresher(session, user, self.rt)
        except BaseException:
            session.rollback()
            raise
        return "ran"

    def _train(self, session: Session, job: Job) -> str:
        from service.training.jobs import tenants_due, train_with_ranker

        if job.tenant_id not in tenants_due(session, self.rt.settings, self.rt.clock()):
            return "skipped"
        train_with_ranker(session, job.tenant_id, self.rt.settings, self.rt.vectors)
        return "ran"

    @contextmanager
    def _heartbeat(self, job_id: int) -> Iterator[None]:
        """Renew the lease every third of its length while the job runs."""
        done = threading.Event()
        every = self.policy.lease.total_seconds() / 3

        def beat() -> None:
            while not done.wait(every):
                try:
                    with self.sessions() as session:
                        if not renew(session, job_id, self.owner, self.rt.clock(),
                                     self.policy):
                            return
                except Exception:  # the lease may run out; another worker then takes over
                    log.exception("renewing the lease of job %s failed", job_id)

        thread = threading.Thread(target=beat, name=f"lease-{job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=5)

    def serve(self, wait_first: bool = True) -> None:
        """Pass after pass, `refresh_poll_seconds` apart, until `stop`."""
        if wait_first and self._stop.wait(self.rt.settings.refresh_poll_seconds):
            return
        while True:
            try:
                self.run_once()
                self.train_once()
            except Exception:  # keep the worker alive; the next pass tries again
                log.exception("worker pass failed")
            if self._stop.wait(self.rt.settings.refresh_poll_seconds):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve, name="refresh-worker", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Stop after the job in hand (signal handlers call this)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
