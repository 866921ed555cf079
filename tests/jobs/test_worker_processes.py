"""Two `interest-tracker worker` processes on one PostgreSQL database and a Chroma server:
every trigger refreshed once between them, and SIGTERM stops each cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.core.config import Settings
from service.jobs.models import Job
from service.profiles.models import ProfileVersion
from service.users.models import User
from service.vectors.embeddings import Embedder
from tests.utils.profiles import ProfileApp, make_profile_app

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(tmp_path: Path, postgres_url: str, chroma_server: str,
        embedder: Embedder) -> Iterator[ProfileApp]:
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url,
                        chroma_url=chroma_server, refresh_worker=False,
                        chroma_collection_prefix=f"w{uuid.uuid4().hex[:8]}",
                        refresh_after_events=1)
    yield from make_profile_app(settings, embedder)


def wait_for(condition: Callable[[], bool], seconds: float, procs: list[subprocess.Popen[str]],
             what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            logs = "\n---\n".join(p.communicate()[0][-3000:] for p in procs)
            pytest.fail(f"{what}: not reached\n{logs}")
        time.sleep(0.2)


def test_two_worker_processes_share_the_jobs_and_stop_on_sigterm(
        app: ProfileApp, tmp_path: Path) -> None:
    settings = app.settings
    sessions = app.t.client.app.state.container.sessions  # type: ignore[attr-defined]

    def versions() -> dict[str, int]:
        with sessions() as session:
            rows = session.execute(
                select(User.user_id, func.count(ProfileVersion.version))
                .join(ProfileVersion, ProfileVersion.user_pk == User.id)
                .group_by(User.user_id))
            return {row[0]: row[1] for row in rows}

    users = [f"u{n}" for n in range(6)]
    for n, user in enumerate(users):
        app.watch(user, [["alien", "bread", "dune"][n % 3]], f"{user}-a")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INTEREST_LLM_BACKEND": "fake",
           "INTEREST_DATABASE_URL": settings.sqlalchemy_url,
           "INTEREST_CHROMA_URL": str(settings.chroma_url),
           "INTEREST_CHROMA_COLLECTION_PREFIX": settings.chroma_collection_prefix,
           "INTEREST_DATA_DIR": str(settings.data_dir), "INTEREST_REFRESH_AFTER_EVENTS": "1",
           "INTEREST_REFRESH_POLL_SECONDS": "0.2", "INTEREST_TRAIN_SEQUENCE_SECONDS": "1",
           "INTEREST_DEMO": "false"}
    procs = [subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    try:
        wait_for(lambda: versions() == dict.fromkeys(users, 1), 120, procs, "first refreshes")
        # Both workers are polling now: new triggers are raced for.
        for user in users[:4]:
            app.watch(user, ["pasta"], f"{user}-b")
        expected = {user: 2 if user in users[:4] else 1 for user in users}
        wait_for(lambda: versions() == expected, 60, procs, "second refreshes")
        time.sleep(1.0)  # a few more passes: nothing is refreshed again
        assert versions() == expected
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("stopped" in out.splitlines()[-1] for out in outputs), outputs
    with sessions() as session:
        jobs = list(session.scalars(select(Job).where(Job.kind == "refresh")))
    ran = [j for j in jobs if j.outcome == "ran"]
    assert len(ran) == len(users) + 4 and {j.state for j in jobs} == {"done"}
    assert {j.lease_owner for j in jobs} == {None}
