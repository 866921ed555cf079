"""Leased jobs: each trigger queued once, each job run once across workers, leases that
run out, failures that back off and end failed, and the `worker` command."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.cli import main as cli_main
from service.core.config import Settings
from service.core.errors import ApiError
from service.jobs.models import Job
from service.jobs.service import NewJob, complete, enqueue, fail, lease_next, prune
from service.profiles.models import ProfileVersion
from service.profiles.runtime import ProfileRuntime
from service.profiles.service import refresh_profile
from service.profiles.worker import RefreshWorker, refresh_now
from service.users.models import User
from service.vectors.embeddings import Embedder
from tests.utils.profiles import ProfileApp, make_profile_app


@pytest.fixture
def app(settings: Settings, embedder: Embedder) -> Iterator[ProfileApp]:
    small = settings.model_copy(update={
        "refresh_after_events": 1, "refresh_max_age_hours": 48.0, "job_lease_seconds": 60.0,
        "job_max_attempts": 3, "job_retry_base_seconds": 60.0,
        "job_retry_max_seconds": 600.0})
    yield from make_profile_app(small, embedder)


def state(app: ProfileApp) -> Any:
    return app.t.client.app.state.container  # type: ignore[attr-defined]


def jobs(app: ProfileApp) -> list[Job]:
    with state(app).sessions() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def versions(app: ProfileApp) -> dict[str, int]:
    with state(app).sessions() as session:
        rows = session.execute(
            select(User.user_id, func.count(ProfileVersion.version))
            .join(ProfileVersion, ProfileVersion.user_pk == User.id).group_by(User.user_id))
        return {row[0]: row[1] for row in rows}


def user_pk(session: Session, user_id: str) -> int:
    return int(session.scalars(select(User.id).where(User.user_id == user_id)).one())


def test_a_trigger_queued_twice_is_one_job_until_it_ends(app: ProfileApp) -> None:
    app.watch("u1", ["alien"], "a")
    worker = RefreshWorker(state(app).sessions, state(app).profiles)
    assert worker.schedule_refreshes() == 1
    assert worker.schedule_refreshes() == 0  # still open: not queued again
    policy = worker.policy
    with state(app).sessions() as session:
        pk = user_pk(session, "u1")
        job = jobs(app)[0]
        assert enqueue(session, [NewJob("refresh", job.tenant_id, pk)] * 2,
                       app.clock(), policy) == 0
        leased = lease_next(session, "w1", app.clock(), policy)
        assert leased is not None and leased.id == job.id
        assert enqueue(session, [NewJob("refresh", job.tenant_id, pk)],
                       app.clock(), policy) == 0  # leased is open too
        assert complete(session, job.id, "w1", app.clock())
        # The next trigger after it ended is a new job.
        assert enqueue(session, [NewJob("refresh", job.tenant_id, pk)],
                       app.clock(), policy) == 1
    assert [(j.state, j.key) for j in jobs(app)] == [("done", f"refresh:{pk}"),
                                                      ("queued", f"refresh:{pk}")]
    assert app.t.delete("/v1/users/u1").status_code == 200
    assert jobs(app) == []  # forgetting a user forgets their jobs


def test_two_workers_racing_run_each_job_once(app: ProfileApp) -> None:
    users = [f"u{n}" for n in range(8)]
    for n, user in enumerate(users):
        app.watch(user, [["alien", "bread", "dune", "pasta"][n % 4]], user)
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def counting(session: Session, user: User, rt: ProfileRuntime) -> Any:
        with lock:
            calls[user.user_id] += 1
        time.sleep(0.02)  # long enough for the other worker to reach for a job meanwhile
        return refresh_profile(session, user, rt, trigger="worker")

    workers = [RefreshWorker(state(app).sessions, state(app).profiles, refresher=counting)
               for _ in range(2)]
    start = threading.Barrier(2, timeout=30)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def run(worker: RefreshWorker) -> None:
        try:
            start.wait()
            results.append(worker.run_once())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    assert calls == Counter(dict.fromkeys(users, 1))
    assert versions(app) == dict.fromkeys(users, 1)
    assert sum(r["refreshed"] for r in results) == len(users)
    assert sum(r["failed"] for r in results) == 0
    done = jobs(app)
    assert len(done) == len(users) and {j.state for j in done} == {"done"}
    assert {j.attempts for j in done} == {1}
    assert {j.lease_owner for j in done} == {None}


def test_an_expired_lease_is_taken_over(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune"], "a")
    gone = RefreshWorker(state(app).sessions, state(app).profiles)
    other = RefreshWorker(state(app).sessions, state(app).profiles)
    gone.schedule_refreshes()
    with state(app).sessions() as session:
        # The first worker leases the job and dies (SIGKILL: it never reports back).
        job = lease_next(session, gone.owner, app.clock(), gone.policy)
        assert job is not None
    assert other.run_once()["refreshed"] == 0  # the lease still holds
    app.clock.advance(seconds=61)
    assert other.run_once()["refreshed"] == 1
    [taken] = jobs(app)
    assert taken.state == "done" and taken.attempts == 2
    assert versions(app) == {"u1": 1}
    with state(app).sessions() as session:  # the dead worker's late report changes nothing
        assert not complete(session, job.id, gone.owner, app.clock())


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_a_failing_job_backs_off_then_ends_failed_and_nothing_stored_is_lost(
        app: ProfileApp) -> None:
    worker = RefreshWorker(state(app).sessions, state(app).profiles)
    app.watch("u1", ["alien", "dune"], "a")
    assert worker.run_once()["refreshed"] == 1
    before = app.profile()
    assert before["version"] == 1 and before["facets"]

    app.watch("u1", ["bread", "pasta"], "b")
    app.model.before_answer = lambda: (_ for _ in ()).throw(ConnectionError("down"))
    waits = []
    for attempt in (1, 2, 3):
        assert worker.run_once()["failed"] == 1, attempt
        assert worker.run_once()["failed"] == 0  # waiting out its back-off
        [job] = [j for j in jobs(app) if j.state != "done"]
        assert job.attempts == attempt and job.last_error
        if attempt < 3:
            assert job.state == "queued"
            waits.append((job.next_attempt_at - app.clock()).total_seconds())
            app.clock.advance(seconds=waits[-1])
    assert waits == [60.0, 120.0]
    assert job.state == "failed" and job.open_key is None and job.finished_at is not None
    assert job.last_error is not None
    assert job.last_error.startswith("llm_unavailable:") and "ConnectionError: down" in \
        job.last_error

    # The failed trigger rests for the longest back-off; the stored profile is intact,
    # the user still stale, the new events still unread.
    assert worker.run_once() == {"refreshed": 0, "failed": 0, "items_indexed": 0}
    after = app.profile()
    assert after["version"] == 1 and after["stale"] is True
    assert [(f["label"], f["evidence"]) for f in after["facets"]] == \
        [(f["label"], f["evidence"]) for f in before["facets"]]

    app.model.before_answer = None
    app.clock.advance(seconds=601)
    assert worker.run_once()["refreshed"] == 1
    labels = {f["label"] for f in app.profile()["facets"]}
    assert labels == {"Science fiction films", "Home cooking"}
    assert [j.state for j in jobs(app)] == ["done", "failed", "done"]


def test_the_worker_command_runs_what_is_due_once(
        app: ProfileApp, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = app.settings
    monkeypatch.setenv("INTEREST_LLM_BACKEND", "fake")
    monkeypatch.setenv("INTEREST_REFRESH_AFTER_EVENTS", "1")
    monkeypatch.setenv("INTEREST_DATABASE_URL", settings.sqlalchemy_url)
    monkeypatch.setenv("INTEREST_TRAIN_SEQUENCE_SECONDS", "1")
    app.watch("u1", ["alien", "dune"], "a")
    app.watch("u2", ["bread"], "b")
    args = ["worker", "--once", "--data-dir", str(settings.data_dir)]
    assert cli_main(args) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["refreshed"] == 2 and counts["failed"] == 0
    assert counts["trained"] == 1 and counts["train_failed"] == 0
    assert versions(app) == {"u1": 1, "u2": 1}
    history = app.t.get("/v1/users/u1/profile/history").json()["versions"]
    assert [v["trigger"] for v in history] == ["worker"]
    assert {(j.kind, j.state) for j in jobs(app)} == {("refresh", "done"), ("train", "done")}

    assert cli_main(args) == 0  # nothing due any more
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts == {"refreshed": 0, "failed": 0, "items_indexed": 0, "jobs_pruned": 0,
                      "trained": 0, "train_failed": 0}


def test_an_explicit_refresh_takes_the_queued_job_and_the_worker_finds_it_done(
        app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune"], "a")
    worker = RefreshWorker(state(app).sessions, state(app).profiles)
    assert worker.schedule_refreshes() == 1
    assert app.refresh()["version"] == 1
    [job] = jobs(app)
    assert (job.state, job.outcome, job.attempts, job.open_key) == ("done", "ran", 1, None)
    assert worker.run_once()["refreshed"] == 0  # nothing left for the worker
    assert versions(app) == {"u1": 1}
    history = app.t.get("/v1/users/u1/profile/history").json()["versions"]
    assert [v["trigger"] for v in history] == ["refresh"]


@pytest.mark.slow  # MiniLM: only meaning supports the label "Science fiction films" for sci-fi tags
def test_an_explicit_refresh_waits_for_the_worker_holding_the_user(app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune"], "a")
    entered, release = threading.Event(), threading.Event()
    calls: Counter[str] = Counter()

    def slow(session: Session, user: User, rt: ProfileRuntime) -> Any:
        calls[user.user_id] += 1
        entered.set()
        assert release.wait(30)
        return refresh_profile(session, user, rt, trigger="worker")

    worker = RefreshWorker(state(app).sessions, state(app).profiles, refresher=slow)
    running = threading.Thread(target=worker.run_once)
    running.start()
    assert entered.wait(30)
    answers: list[Any] = []
    call = threading.Thread(target=lambda: answers.append(
        app.t.post("/v1/users/u1/profile/refresh")))
    call.start()
    time.sleep(0.5)
    assert not answers  # still waiting for the worker's refresh
    release.set()
    running.join(30)
    call.join(30)
    [answer] = answers
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == 1 and {f["label"] for f in body["facets"]} == \
        {"Science fiction films"}
    assert calls == Counter({"u1": 1}) and versions(app) == {"u1": 1}
    history = app.t.get("/v1/users/u1/profile/history").json()["versions"]
    assert [v["trigger"] for v in history] == ["worker"]  # the model ran once, for the worker


def test_an_explicit_refresh_that_cannot_wait_is_a_409_and_a_failed_one_is_recorded(
        app: ProfileApp) -> None:
    app.watch("u1", ["alien", "dune"], "a")
    worker = RefreshWorker(state(app).sessions, state(app).profiles)
    worker.schedule_refreshes()
    with state(app).sessions() as session:
        held = lease_next(session, "elsewhere", app.clock(), worker.policy)
        assert held is not None
        user = session.get(User, held.user_pk)
        assert user is not None
        with pytest.raises(ApiError) as busy:
            refresh_now(session, user, state(app).profiles, wait=0.3)
        assert busy.value.status == 409 and busy.value.code == "refresh_in_progress"
        assert busy.value.headers == {"Retry-After": "5"}
        # The holder's attempt fails: the explicit call takes the job over at once,
        # whatever its back-off.
        assert fail(session, held.id, "elsewhere", app.clock(), "boom", worker.policy) \
            == "queued"
    assert app.refresh()["version"] == 1
    [job] = jobs(app)
    assert (job.state, job.attempts) == ("done", 2)

    app.watch("u1", ["bread"], "b")
    app.model.before_answer = lambda: (_ for _ in ()).throw(ConnectionError("down"))
    r = app.t.post("/v1/users/u1/profile/refresh")
    assert r.status_code == 503, r.text
    failed = jobs(app)[-1]
    assert (failed.state, failed.attempts) == ("queued", 1)  # the worker retries it later
    assert failed.last_error is not None and failed.last_error.startswith("llm_unavailable:")
    assert app.profile()["version"] == 1 and app.profile()["stale"] is True


def test_ended_jobs_are_pruned_after_they_are_kept(app: ProfileApp) -> None:
    for user in ("u1", "u2"):
        app.watch(user, ["alien"], user)
    worker = RefreshWorker(state(app).sessions, state(app).profiles)
    assert worker.run_once()["refreshed"] == 2
    policy = worker.policy  # retry max 600 s: rows are kept at least that long
    with state(app).sessions() as session:
        assert prune(session, app.clock(), timedelta(0), policy) == 0
        [first, second] = jobs(app)
        first.state = "failed"
        session.merge(first)
        session.commit()
    app.clock.advance(seconds=601)
    with state(app).sessions() as session:
        assert prune(session, app.clock(), timedelta(hours=1), policy) == 0  # kept an hour
    app.clock.advance(hours=1)
    assert worker.prune_jobs() == 0  # the app keeps them 168 hours
    with state(app).sessions() as session:
        assert prune(session, app.clock(), timedelta(hours=1), policy) == 2
    assert jobs(app) == []
    assert versions(app) == {"u1": 1, "u2": 1}  # only the job rows went


@pytest.fixture
def short_lease(settings: Settings, embedder: Embedder) -> Iterator[ProfileApp]:
    short = settings.model_copy(update={"refresh_after_events": 1, "job_lease_seconds": 0.3})
    yield from make_profile_app(short, embedder)


def test_an_explicit_refresh_renews_its_lease_while_the_model_answers(
        short_lease: ProfileApp) -> None:
    app = short_lease
    app.watch("u1", ["alien", "dune"], "a")
    boxes = state(app)
    policy = RefreshWorker(boxes.sessions, boxes.profiles).policy
    taken: list[Any] = []

    def slow_model() -> None:
        # Past the lease as the clock goes, then long enough (real time) for a beat.
        app.clock.advance(seconds=10)
        time.sleep(0.4)
        with boxes.sessions() as session:
            taken.append(lease_next(session, "other", app.clock(), policy))

    app.model.before_answer = slow_model
    assert app.refresh()["version"] == 1
    assert taken and taken[0] is None  # renewed: no other worker could take it over
    [job] = jobs(app)
    assert (job.state, job.attempts) == ("done", 1)
