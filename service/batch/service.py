"""Batch refresh and training on a Ray cluster (DESIGN.md §2, §3 "jobs").

Ray schedules the work; this module decides what there is to do: which users a batch
still owes a refresh (resume), how many refreshes are in flight at once (what the LLM
server can take), and what each task builds for itself (a runtime from Settings, a
session per user). Ray is imported only here and only when asked for.

Resume: a batch is a marker file in the data folder, `batches/refresh-tenant-<id>.json`,
holding the time it started. A user whose profile was refreshed at or after that time
(by this batch, the worker or the API) is done for the batch; the rest are due. A run
that ends with every user done marks the batch finished, and the next run starts a new
batch; a run that was interrupted or had failures leaves it open, and the next run
resumes it (`--restart` starts a new batch anyway; `--resume` continues the last
batch even if it finished, which refreshes only users added or never refreshed since).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.profiles.models import Profile
from service.users.models import User

LOCAL = "local"  # `--ray` without an address: a Ray instance of our own on loopback
TRIGGER = "batch"


@dataclass(frozen=True)
class Batch:
    """One pass over a tenant's users; `finished_at` is set once every user was done."""

    tenant_id: int
    started_at: datetime
    finished_at: datetime | None = None

    def to_json(self) -> str:
        return json.dumps({
            "tenant_id": self.tenant_id, "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None})

    @classmethod
    def from_json(cls, text: str) -> Batch:
        raw = json.loads(text)
        done = raw.get("finished_at")
        return cls(int(raw["tenant_id"]), datetime.fromisoformat(raw["started_at"]),
                   datetime.fromisoformat(done) if done else None)


def batch_path(settings: Settings, tenant_id: int) -> Path:
    return settings.data_dir / "batches" / f"refresh-tenant-{tenant_id}.json"


def open_batch(path: Path, tenant_id: int, now: datetime, *, restart: bool = False,
               resume: bool = False) -> tuple[Batch, bool]:
    """The unfinished batch in `path` (or with `resume` the last one, finished or not)
    and True, or a new batch started now and False."""
    if path.exists() and not restart:
        batch = Batch.from_json(path.read_text())
        if batch.finished_at is None or resume:
            return dataclasses.replace(batch, finished_at=None), True
    batch = Batch(tenant_id, now)
    _write(path, batch)
    return batch, False


def finish_batch(path: Path, batch: Batch, now: datetime) -> Batch:
    done = dataclasses.replace(batch, finished_at=now)
    _write(path, done)
    return done


def _write(path: Path, batch: Batch) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(batch.to_json())
    tmp.replace(path)  # atomic: an interrupted write leaves the old marker


def users_due(session: Session, tenant_id: int, since: datetime) -> list[int]:
    """The tenant's users not refreshed since `since` (primary keys, in order)."""
    query = (select(User.id).outerjoin(Profile, Profile.user_pk == User.id)
             .where(User.tenant_id == tenant_id,
                    or_(Profile.refreshed_at.is_(None), Profile.refreshed_at < since))
             .order_by(User.id))
    return list(session.scalars(query))


def chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def portable_settings(settings: Settings) -> dict[str, Any]:
    """What was configured here (environment, flags), for a task to rebuild Settings with.

    Defaults are left out so that a cluster node fills in its own (the prompts folder of
    its install); the data folder is made absolute, since a worker's working directory
    is not the driver's.
    """
    fields = settings.model_dump(exclude_unset=True)
    fields["data_dir"] = settings.data_dir.resolve()
    return fields


@dataclass(frozen=True)
class RefreshResult:
    """One user's refresh in a task: wall-clock start and end, and the error if any."""

    user_id: str
    started: float
    ended: float
    error: str | None = None


def refresh_users(fields: dict[str, Any], user_pks: list[int],
                  trigger: str = TRIGGER) -> list[RefreshResult]:
    """Refresh these users one after another, each in a session of its own.

    Runs inside a Ray task: it builds its own runtime from Settings the way the CLI does
    and closes the LLM runtime (an embedded server, if that is the backend) at the end. A
    failed refresh changes nothing for that user and does not stop the others.
    """
    from service.core.db import make_engine, make_sessionmaker
    from service.core.errors import ApiError
    from service.models import load_all_models
    from service.profiles.runtime import ProfileRuntime
    from service.profiles.worker import refresh_now

    load_all_models()  # a fresh worker process has not seen every table yet
    settings = Settings(**fields)
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_sessionmaker(engine)
    rt = ProfileRuntime.from_settings(settings)
    llm = rt.llm
    results: list[RefreshResult] = []
    try:
        for user_pk in user_pks:
            with sessions() as session:
                user = session.get(User, user_pk)
                if user is None:  # forgotten since the batch listed it
                    continue
                started = time.time()
                try:
                    refresh_now(session, user, rt, trigger=trigger)
                except ApiError as exc:
                    session.rollback()
                    results.append(RefreshResult(user.user_id, started, time.time(),
                                                 f"{exc.code}: {exc.message}"))
                else:
                    results.append(RefreshResult(user.user_id, started, time.time()))
    finally:
        llm.close()
        engine.dispose()
    return results


def connect(address: str, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address`, or start a Ray instance on loopback for LOCAL.

    A Ray already initialised in this process (a test's, an operator's notebook) is used
    as it is. Returns whether this call started Ray (and so should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    if address == LOCAL:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                 include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=True)
    else:
        ray.init(address=address, log_to_driver=True)
    return True


def shutdown() -> None:
    import ray

    ray.shutdown()


def refresh_on_ray(fields: dict[str, Any], user_pks: Sequence[int], *, concurrency: int,
                   users_per_task: int = 4,
                   on_done: Callable[[list[RefreshResult]], None] | None = None,
                   ) -> list[RefreshResult]:
    """Fan the users out as Ray tasks with at most `concurrency` tasks in flight.

    Each task refreshes its users one after another, so at most `concurrency` refreshes
    (and LLM calls) run at once across the cluster. A task that dies (its worker killed)
    is reported as failures for its users; the batch goes on.
    """
    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(refresh_users)
    fields_ref = ray.put(fields)
    pending: dict[Any, list[int]] = {}
    results: list[RefreshResult] = []
    queue = list(chunks(user_pks, max(1, users_per_task)))
    queue.reverse()
    while queue or pending:
        while queue and len(pending) < concurrency:
            group = queue.pop()
            pending[task.remote(fields_ref, group)] = group
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            group = pending.pop(ref)
            try:
                batch: list[RefreshResult] = ray.get(ref)
            except Exception as exc:  # the task itself failed: every user in it did
                now = time.time()
                batch = [RefreshResult(f"#{pk}", now, now,
                                       f"task_failed: {type(exc).__name__}: {exc}")
                         for pk in group]
            results.extend(batch)
            if on_done is not None:
                on_done(batch)
    return results


def max_in_flight(results: Sequence[RefreshResult]) -> int:
    """The most refreshes that overlapped in time."""
    edges = sorted([(r.started, 1) for r in results] + [(r.ended, -1) for r in results],
                   key=lambda e: (e[0], e[1]))
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


@dataclass(frozen=True)
class TrainOutcome:
    """What `train` prints: an exit code, the meta as JSON (stdout), and messages (stderr)."""

    code: int
    meta_json: str | None = None
    messages: tuple[str, ...] = ()


def train_named_tenant(fields: dict[str, Any], tenant_name: str) -> TrainOutcome:
    """Train one tenant's recommender models now (the `train` command's work).

    The same function runs in the CLI's process or as a Ray task, so both print the same.
    """
    from service.core.db import make_engine, make_sessionmaker, migrate
    from service.core.errors import ApiError
    from service.tenants.service import tenant_by_name
    from service.training.jobs import train_with_ranker
    from service.vectors.store import VectorStore, client_for

    settings = Settings(**fields)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    messages: list[str] = []
    try:
        with make_sessionmaker(engine)() as session:
            tenant = tenant_by_name(session, tenant_name)
            if tenant is None:
                return TrainOutcome(2, None, (f"error: no tenant named {tenant_name!r}",))
            try:
                vectors: VectorStore | None = VectorStore(client_for(settings),
                                                          settings.chroma_collection_prefix)
            except Exception as exc:  # the ranker still trains, without facet features
                messages.append(f"warning: vector store unavailable ({type(exc).__name__}: "
                                f"{exc}); training the ranker without facet features")
                vectors = None
            try:
                meta = train_with_ranker(session, tenant.id, settings, vectors, progress=True)
            except ApiError as exc:
                messages.append(f"error: tenant {tenant_name!r}: {exc.message}")
                return TrainOutcome(1, None, tuple(messages))
    finally:
        engine.dispose()
    return TrainOutcome(0, json.dumps(dataclasses.asdict(meta)), tuple(messages))


def train_on_ray(fields: dict[str, Any], tenant_name: str) -> TrainOutcome:
    """Run `train_named_tenant` as one Ray task; its progress bar reaches the driver's
    terminal through Ray's log forwarding."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(train_named_tenant)
    outcome: TrainOutcome = ray.get(task.remote(fields, tenant_name))
    return outcome
