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
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from service.catalog.models import Item, pending_index
from service.catalog.service import index_pending_items
from service.core.errors import ApiError, Conflict
from service.jobs.models import Job
from service.jobs.service import (
    JobPolicy,
    NewJob,
    claim,
    complete,
    enqueue,
    fail,
    lease_next,
    open_state,
    prune,
    renew,
    worker_id,
)
from service.profiles.models import Profile, ProfileVersion
from service.profiles.runtime import ProfileRuntime
from service.profiles.service import refresh_many, refresh_profile
from service.users.models import User

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 0.2

Refresher = Callable[[Session, User, ProfileRuntime], Any]


def _refresh_by_worker(session: Session, user: User, rt: ProfileRuntime) -> Any:
    return refresh_profile(session, user, rt, trigger="worker")


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def lease_heartbeat(sessions: sessionmaker[Session], job_id: int, owner: str,
                    clock: Callable[[], datetime], policy: JobPolicy) -> Iterator[None]:
    """Renew the job's lease every third of its length while the block runs, so only a
    dead holder's lease runs out."""
    done = threading.Event()
    every = policy.lease.total_seconds() / 3

    def beat() -> None:
        while not done.wait(every):
            try:
                with sessions() as session:
                    if not renew(session, job_id, owner, clock(), policy):
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


def refresh_busy() -> Conflict:
    return Conflict("refresh_in_progress",
                    "A worker is refreshing this user's profile right now; try again shortly.",
                    headers={"Retry-After": "5"})


def refresh_now(session: Session, user: User, rt: ProfileRuntime, trigger: str = "refresh",
                wait: float = 0.0) -> ProfileVersion | None:
    """An explicit refresh (API call, CLI, batch), run through the user's refresh job.

    It leases the user's job row (queued first if none is open), so it never runs beside
    a worker's refresh of the same user, and the worker then finds nothing left to do.
    When a worker holds the job, this waits up to `wait` seconds for it to finish and
    returns None (the worker's version is the answer), or takes the job over if that
    attempt failed; after that, 409 `refresh_in_progress`. The lease is renewed while the
    refresh runs, as a worker's is. A failed refresh records the attempt on the job (retried by
    the worker after its back-off if the user is still due) and raises as before.
    """
    policy = JobPolicy.from_settings(rt.settings)
    owner = worker_id()
    job = NewJob("refresh", user.tenant_id, user.id)
    deadline = time.monotonic() + wait
    held = claim(session, job, owner, rt.clock(), policy)
    while held is None:
        state = open_state(session, job.key)
        if state is None:
            return None  # the holder finished: its version is the answer
        if state == "queued":  # the holder's attempt failed: take the job over
            held = claim(session, job, owner, rt.clock(), policy, create=False)
            continue
        if time.monotonic() >= deadline:
            raise refresh_busy()
        time.sleep(WAIT_POLL_SECONDS)
    beats = sessionmaker(bind=session.get_bind(), expire_on_commit=False)
    try:
        with lease_heartbeat(beats, held.id, owner, rt.clock, policy):
            version = refresh_profile(session, user, rt, trigger=trigger)
    except BaseException as exc:
        session.rollback()
        fail(session, held.id, owner, rt.clock(), _error_text(exc), policy)
        raise
    complete(session, held.id, owner, rt.clock())
    return version


def refresh_users_now(sessions: sessionmaker[Session], user_pks: Sequence[int],
                      rt: ProfileRuntime, trigger: str, *, desc: str = "refreshing profiles",
                      progress: bool = True) -> tuple[list[str], list[str]]:
    """`refresh_many` through the job queue (`refresh_now` for each user): a user a
    worker is refreshing right now is left to it and listed as a failure with code
    `refresh_in_progress` (a re-run picks it up if it is still due)."""
    return refresh_many(sessions, user_pks, rt, trigger, desc=desc, progress=progress,
                        refresh=lambda session, user: refresh_now(session, user, rt,
                                                                  trigger=trigger))


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
            tenants = list(session.scalars(select(Item.tenant_id).where(pending_index())
                                           .distinct()))
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

    def prune_jobs(self) -> int:
        """Delete jobs that ended more than `job_keep_hours` ago; returns how many."""
        with self.sessions() as session:
            return prune(session, self.rt.clock(),
                         timedelta(hours=self.rt.settings.job_keep_hours), self.policy)

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
            with lease_heartbeat(self.sessions, job.id, self.owner, self.rt.clock,
                                 self.policy), self.sessions() as session:
                outcome = self._refresh(session, job) if job.kind == "refresh" \
                    else self._train(session, job)
        except Exception as exc:  # the job is retried later; the worker goes on
            error = _error_text(exc)
            if isinstance(exc, ApiError):
                log.warning("%s job %s failed: %s", job.kind, job.id, error)
            else:
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

    def serve(self, wait_first: bool = True) -> None:
        """Pass after pass, `refresh_poll_seconds` apart, until `stop`."""
        if wait_first and self._stop.wait(self.rt.settings.refresh_poll_seconds):
            return
        while True:
            try:
                self.run_once()
                self.train_once()
                self.prune_jobs()
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
