"""The job queue: enqueue once per trigger, lease one job to one worker, retry with
back-off, end failed with the error.

Leasing is a conditional UPDATE (`state` still runnable) whose row count says who won,
so it is safe on both databases. On PostgreSQL the candidate is first selected with
`FOR UPDATE SKIP LOCKED`, so workers step over each other's rows instead of queueing
on them; SQLite has one writer at a time and needs no more. A lease runs out after
`job_lease_seconds` (a worker killed mid-job leaves its row leased until then, and
another worker takes it over); a running job renews its lease (`renew`).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.db import insert_new
from service.jobs.models import Job

OPEN_STATES = ("queued", "leased")
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class JobPolicy:
    """Lease length and retry schedule (settings `job_*`)."""

    lease: timedelta = timedelta(minutes=10)
    max_attempts: int = 5
    retry_base: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobPolicy:
        return cls(lease=timedelta(seconds=settings.job_lease_seconds),
                   max_attempts=settings.job_max_attempts,
                   retry_base=timedelta(seconds=settings.job_retry_base_seconds),
                   retry_max=timedelta(seconds=settings.job_retry_max_seconds))

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failure: base, 2 x base, 4 x base, ... capped."""
        return min(self.retry_base * (1 << min(max(attempts - 1, 0), 30)), self.retry_max)


@dataclass(frozen=True)
class NewJob:
    kind: str  # refresh | train
    tenant_id: int
    user_pk: int | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.user_pk if self.kind == 'refresh' else self.tenant_id}"


def worker_id() -> str:
    """Who holds a lease: host, process and a per-worker suffix (threads differ too)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def enqueue(session: Session, jobs: Sequence[NewJob], now: datetime,
            policy: JobPolicy) -> int:
    """Queue each job unless one with its key is already open; returns how many went in.

    A key whose last job ended failed waits out the longest back-off before it is
    queued again, so one broken history cannot keep the model busy.
    """
    if not jobs:
        return 0
    keys = {job.key for job in jobs}
    resting = set(session.scalars(select(Job.key).where(
        Job.key.in_(keys), Job.state == "failed",
        Job.finished_at > now - policy.retry_max)))
    rows = [_row(job, now) for job in {job.key: job for job in jobs}.values()
            if job.key not in resting]
    if not rows:
        return 0
    added = insert_new(session, Job, rows)
    session.commit()
    return added


def _row(job: NewJob, now: datetime) -> dict[str, Any]:
    return {"kind": job.kind, "tenant_id": job.tenant_id, "user_pk": job.user_pk,
            "key": job.key, "open_key": job.key, "state": "queued", "attempts": 0,
            "next_attempt_at": now, "created_at": now, "updated_at": now}


def claim(session: Session, job: NewJob, owner: str, now: datetime,
          policy: JobPolicy, create: bool = True) -> Job | None:
    """Lease this job for an explicit request (an API call, a batch): queued first when
    none is open, then taken at once whatever its back-off, since someone asked for it
    now. None while another worker holds an unexpired lease on it (or, with `create`
    false, when no job with its key is open).

    The explicit call and the worker's own trigger share one row, so the work runs
    once: whoever leases the row runs it, and the other finds it leased.
    """
    if create:
        insert_new(session, Job, [_row(job, now)])
        session.commit()
    claimable = or_(Job.state == "queued",
                    and_(Job.state == "leased", Job.lease_expires_at <= now))
    claimed = session.execute(
        update(Job).where(Job.open_key == job.key, claimable)
        .values(state="leased", lease_owner=owner, lease_expires_at=now + policy.lease,
                attempts=Job.attempts + 1, updated_at=now))
    session.commit()
    if _rowcount(claimed) != 1:
        return None
    return session.scalars(select(Job).where(Job.open_key == job.key, Job.lease_owner == owner)
                           .execution_options(populate_existing=True)).one_or_none()


def open_state(session: Session, key: str) -> str | None:
    """The state of the open job with this key (queued or leased), None when none is open.

    Ends the transaction, so the next read sees what other workers committed meanwhile.
    """
    state = session.scalar(select(Job.state).where(Job.open_key == key))
    session.commit()
    return state


def prune(session: Session, now: datetime, keep: timedelta, policy: JobPolicy) -> int:
    """Delete jobs that ended (done or failed) longer than `keep` ago; returns how many.

    A failed key's last row is what keeps it resting (see `enqueue`), so rows younger
    than the longest back-off are kept whatever `keep` says.
    """
    cutoff = now - max(keep, policy.retry_max)
    result = session.execute(delete(Job).where(Job.state.in_(("done", "failed")),
                                               Job.finished_at < cutoff))
    session.commit()
    return _rowcount(result)


def _runnable(now: datetime) -> Any:
    return or_(and_(Job.state == "queued", Job.next_attempt_at <= now),
               and_(Job.state == "leased", Job.lease_expires_at <= now))


def lease_next(session: Session, owner: str, now: datetime, policy: JobPolicy,
               kinds: Sequence[str] = ("refresh", "train")) -> Job | None:
    """Claim the next runnable job of these kinds for `owner`, or None.

    Runnable: queued and due, or leased with its lease run out (its worker died). An
    expired lease that already used every attempt ends failed instead.
    """
    expired = session.execute(
        update(Job).where(Job.state == "leased", Job.lease_expires_at <= now,
                          Job.attempts >= policy.max_attempts)
        .values(state="failed", open_key=None, finished_at=now, updated_at=now,
                last_error="lease expired: the worker stopped without finishing",
                lease_owner=None))
    if _rowcount(expired):
        session.commit()
    postgres = session.get_bind().dialect.name == "postgresql"
    for _ in range(20):  # each miss means another worker won that row; try the next
        query = (select(Job.id).where(Job.kind.in_(kinds), _runnable(now))
                 .order_by(Job.next_attempt_at, Job.id).limit(1))
        if postgres:
            query = query.with_for_update(skip_locked=True)
        job_id = session.scalar(query)
        if job_id is None:
            session.commit()
            return None
        claimed = session.execute(
            update(Job).where(Job.id == job_id, _runnable(now))
            .values(state="leased", lease_owner=owner, lease_expires_at=now + policy.lease,
                    attempts=Job.attempts + 1, updated_at=now))
        session.commit()
        if _rowcount(claimed) == 1:
            return session.get(Job, job_id, populate_existing=True)
    return None


def _held(job_id: int, owner: str) -> Any:
    return and_(Job.id == job_id, Job.state == "leased", Job.lease_owner == owner)


def renew(session: Session, job_id: int, owner: str, now: datetime, policy: JobPolicy) -> bool:
    """Extend a running job's lease; False when it was lost (expired and taken over)."""
    result = session.execute(update(Job).where(_held(job_id, owner))
                             .values(lease_expires_at=now + policy.lease, updated_at=now))
    session.commit()
    return _rowcount(result) == 1


def complete(session: Session, job_id: int, owner: str, now: datetime,
             outcome: str = "ran") -> bool:
    """Mark a leased job done; False when the lease had been lost meanwhile."""
    result = session.execute(
        update(Job).where(_held(job_id, owner))
        .values(state="done", open_key=None, outcome=outcome, lease_owner=None,
                lease_expires_at=None, finished_at=now, updated_at=now))
    session.commit()
    return _rowcount(result) == 1


def fail(session: Session, job_id: int, owner: str, now: datetime, error: str,
         policy: JobPolicy) -> str | None:
    """Record a failed attempt: queued again after its back-off, or failed for good once
    every attempt is used. Returns the new state (None when the lease had been lost)."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.state != "leased" or job.lease_owner != owner:
        session.rollback()
        return None
    error = error[:MAX_ERROR_CHARS]
    if job.attempts >= policy.max_attempts:
        values: dict[str, Any] = {"state": "failed", "open_key": None, "finished_at": now}
    else:
        values = {"state": "queued", "next_attempt_at": now + policy.backoff(job.attempts)}
    result = session.execute(
        update(Job).where(_held(job_id, owner))
        .values(last_error=error, lease_owner=None, lease_expires_at=None, updated_at=now,
                **values))
    session.commit()
    return str(values["state"]) if _rowcount(result) == 1 else None

