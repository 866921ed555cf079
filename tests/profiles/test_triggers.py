"""When refreshes happen: the background worker, the operator's CLI, and two refreshes
of one user at the same moment (no lost update, on PostgreSQL and SQLite)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from service.cli import main as cli_main
from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from service.profiles.models import ProfileFacetRow, ProfileVersion
from service.profiles.runtime import ProfileRuntime
from service.profiles.service import refresh_profile
from service.users.models import User
from service.vectors.embeddings import Embedder
from tests.utils.fakes import topic_summarizer
from tests.utils.profiles import TOPICS, ProfileApp, make_profile_app


@pytest.fixture
def app(settings: Settings, embedder: Embedder) -> Iterator[ProfileApp]:
    small = settings.model_copy(update={"refresh_after_events": 3,
                                        "refresh_max_age_hours": 48.0})
    yield from make_profile_app(small, embedder)


def test_the_worker_refreshes_after_n_events_and_records_decay_by_age(app: ProfileApp) -> None:
    worker = app.t.client.app.state.container.worker  # type: ignore[attr-defined]
    app.watch("u1", ["alien", "dune"], "a")  # 2 < 3 events: not due yet
    app.watch("u2", ["bread", "pasta", "curry"], "b")
    assert worker.run_once()["refreshed"] == 1
    assert app.profile("u2")["version"] == 1 and app.profile("u1")["version"] == 0

    app.watch("u1", ["solaris"], "c")  # the third event
    assert worker.run_once()["refreshed"] == 1
    assert app.profile("u1")["version"] == 1
    assert worker.run_once()["refreshed"] == 0  # nothing due
    history = app.t.get("/v1/users/u1/profile/history").json()["versions"]
    assert [v["trigger"] for v in history] == ["worker"]

    # Two days later both profiles are due by age; nothing new, so no model call.
    calls = len(app.model.calls)
    app.clock.advance(hours=49)
    assert worker.run_once()["refreshed"] == 2
    assert len(app.model.calls) == calls
    assert app.profile("u1")["version"] == 2


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_a_stale_user_below_n_is_refreshed_once_old_enough(app: ProfileApp) -> None:
    worker = app.t.client.app.state.container.worker  # type: ignore[attr-defined]
    app.watch("u1", ["alien"], "a")
    assert worker.run_once()["refreshed"] == 0
    # Users are created at real time; the age trigger compares with the clock.
    app.clock.now = app.clock.now + timedelta(days=120)
    assert worker.run_once()["refreshed"] == 1
    assert app.profile("u1")["facets"][0]["label"] == "Science fiction films"


def test_a_failing_user_backs_off(app: ProfileApp) -> None:
    worker = app.t.client.app.state.container.worker  # type: ignore[attr-defined]
    app.watch("u1", ["alien", "dune", "solaris"], "a")
    app.model.before_answer = lambda: (_ for _ in ()).throw(ConnectionError("down"))
    assert worker.run_once() == {"refreshed": 0, "failed": 1, "items_indexed": 0}
    assert worker.run_once()["failed"] == 0  # waiting out its back-off
    app.model.before_answer = None
    app.clock.advance(minutes=2)
    assert worker.run_once()["refreshed"] == 1


def test_the_worker_thread_runs_on_its_own(settings: Settings, embedder: Embedder) -> None:
    live = settings.model_copy(update={"refresh_worker": True, "refresh_poll_seconds": 0.2,
                                       "refresh_after_events": 2})
    for app in make_profile_app(live, embedder):
        app.watch("u1", ["alien", "dune"], "a")
        for _ in range(100):
            if app.profile()["version"] == 1:
                break
            threading.Event().wait(0.1)
        assert app.profile()["version"] == 1


def test_items_left_unindexed_are_picked_up_by_the_worker(app: ProfileApp) -> None:
    vectors = app.t.client.app.state.container.vectors  # type: ignore[attr-defined]
    real_upsert = vectors.upsert

    def broken(*a: object, **kw: object) -> None:
        raise ConnectionError("vector store down")

    vectors.upsert = broken
    r = app.t.put("/v1/items", json={"items": [{"item_id": "new", "title": "Gravity"}]})
    assert r.status_code == 200 and r.json()["index_pending"] == 1 and r.json()["indexed"] == 0
    assert app.t.get("/v1/items/new").status_code == 200  # stored all the same
    vectors.upsert = real_upsert
    worker = app.t.client.app.state.container.worker  # type: ignore[attr-defined]
    assert worker.run_once()["items_indexed"] == 1
    assert "new" in vectors.ids(1, "items")


@pytest.mark.slow  # the CLI embeds with MiniLM, as configured
def test_the_refresh_command_shows_progress_and_refreshes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    embedder: Embedder,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", refresh_worker=False, llm_backend="fake")
    monkeypatch.setenv("INTEREST_LLM_BACKEND", "fake")
    data = str(tmp_path / "data")
    for app in make_profile_app(settings, embedder):
        app.watch("u1", ["alien"], "a")
        app.watch("u2", ["bread"], "b")
        assert cli_main(["refresh", "--all", "--tenant", "acme", "--data-dir", data]) == 0
        out = capsys.readouterr()
        assert "refreshed 2 of 2 profiles" in out.out and "refreshing profiles" in out.err
        assert "2/2" in out.err  # the progress bar's count
        assert cli_main(["refresh", "--user", "u1", "--tenant", "acme", "--data-dir", data]) == 0
        assert cli_main(["refresh", "--user", "nobody", "--tenant", "acme",
                         "--data-dir", data]) == 2
        assert cli_main(["refresh", "--all", "--tenant", "nope", "--data-dir", data]) == 2
        with pytest.raises(SystemExit):
            cli_main(["refresh", "--tenant", "acme"])  # neither --user nor --all
        versions = app.t.get("/v1/users/u1/profile/history").json()["versions"]
        assert [v["trigger"] for v in versions] == ["cli", "cli"]


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_two_refreshes_of_one_user_at_once_lose_nothing(app: ProfileApp,
                                                        settings: Settings) -> None:
    """Two "processes" (separate runtimes, so no shared in-process lock) refresh one
    user at the same moment. Both summaries are held until both are in flight, so the
    merges really race; the profile row lock orders them (SQLite: its write lock) and
    the second merge builds on the first."""
    app.watch("u1", ["notebook"], "a")
    app.refresh()  # the profile row exists: only the row lock can order the race
    app.watch("u1", ["alien", "bread"], "b")
    sessions = app.t.client.app.state.container.sessions  # type: ignore[attr-defined]
    both_asked = threading.Barrier(2, timeout=60)
    runtimes = []
    for topic in ("Science fiction films", "Home cooking"):
        model = topic_summarizer({topic: TOPICS[topic]})
        model.before_answer = both_asked.wait
        runtimes.append(ProfileRuntime(settings, LLMRuntime(settings, chat_model=model),
                                       app.t.client.app.state.container.embedder,  # type: ignore
                                       app.t.client.app.state.container.vectors,  # type: ignore
                                       app.clock))
    errors: list[BaseException] = []

    def refresh(rt: ProfileRuntime) -> None:
        try:
            with sessions() as session:
                user = session.scalars(select(User).where(User.user_id == "u1")).one()
                refresh_profile(session, user, rt)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=refresh, args=(rt,)) for rt in runtimes]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    profile = app.profile()
    assert profile["version"] == 3 and profile["stale"] is False
    assert {f["label"] for f in profile["facets"]} == {"Science fiction films",
                                                      "Home cooking", "Romance films"}
    with sessions() as session:
        assert sorted(session.scalars(select(ProfileVersion.version))) == [1, 2, 3]
        versions = session.scalars(select(ProfileVersion).order_by(ProfileVersion.version))
        assert [len(v.facets) for v in versions] == [1, 2, 3]
        assert len(session.scalars(select(ProfileFacetRow)).all()) == 3
