"""The demo tenant `serve` loads on first start: real MiniLM embeddings and a real Chroma
folder, a scripted model instead of the embedded LLM (tests/utils/chat.py), and a few
hundred movies instead of the whole catalog (the tests marked slow). SQLite only: the
load is what `make run` does on the embedded default. How ratings become sessions, and
the settings, are checked without loading anything."""

from __future__ import annotations

import json
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.catalog.models import Item
from service.core.config import Settings
from service.core.db import make_engine, make_sessionmaker, migrate, utcnow
from service.datasets.movielens import load_movielens_latest
from service.datasets.types import Interaction
from service.demo import (
    DEMO_TENANT,
    KEY_FILE,
    MARKER_FILE,
    MAX_HISTORY_SPAN,
    NEWEST_BEFORE_LOAD,
    REFRESH_AFTER,
    SESSION_GAP,
    SESSION_SPACING,
    DemoLoad,
    demo_sessions,
    demo_user_id,
    load_demo,
    newest_rating_at,
    rating_events,
)
from service.ingest.models import Event
from service.llm.runtime import LLMRuntime
from service.profiles.models import ProfileVersion
from service.profiles.runtime import ProfileRuntime
from service.vectors.embeddings import embedder_for
from service.vectors.store import VectorStore, client_for
from tests.utils.api import app_client
from tests.utils.chat import CHAT_PATH, ChattingSummarizer, sse_events
from tests.utils.fakes import Clock

# One facet per genre keyword found in a user's activity lines (genres are item tags).
TOPICS = {
    "Animated films": ("animation", "Animated family films.", "like"),
    "Horror films": ("horror", "Horror and suspense films.", "like"),
    "War films": ("war", "Films about war.", "like"),
    "Westerns": ("western", "Westerns.", "like"),
}
USERS = ["401", "454", "309"]  # the default demo users
CATALOG_LIMIT = 260  # their 215 movies and the most rated others
SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def ratings() -> dict[str, list[Interaction]]:
    by_user: dict[str, list[Interaction]] = {}
    for e in load_movielens_latest().interactions:
        by_user.setdefault(e.user, []).append(e)
    return by_user


@dataclass
class Demo:
    settings: Settings
    sessions: sessionmaker[Session]
    rt: ProfileRuntime
    model: ChattingSummarizer
    first: DemoLoad

    def load(self) -> DemoLoad:
        return load_demo(self.settings, self.sessions, self.rt, say=lambda _: None,
                         progress=False)

    def client(self) -> TestClient:
        return app_client(self.settings, self.rt.llm)

    def counts(self) -> tuple[int, int, int, int]:
        with self.sessions() as session:
            return (session.scalar(select(func.count()).select_from(Item)) or 0,
                    session.scalar(select(func.count()).select_from(Event)) or 0,
                    session.scalar(select(func.count()).select_from(ProfileVersion)) or 0,
                    len(self.model.calls))


def start_demo(data_dir: Path, users: list[str], limit: int | None,
               before_answer: Callable[[], None] | None = None,
               clock: Callable[[], datetime] = utcnow, background: bool = False) -> Demo:
    """The demo load; `background` adds the data set's other raters and trains the
    tenant's models as `make run` does (with `make run`'s settings: the sequence model
    for `load.DEMO_SEQUENCE_EPOCHS`, so every load trains the same models)."""
    settings = Settings(data_dir=data_dir, refresh_worker=False, demo_users=users,
                        demo_catalog_limit=limit, demo_background_raters=background)
    data_dir.mkdir(parents=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    model = ChattingSummarizer(replies=[], calls=[], topics=TOPICS, chat_calls=[],
                               before_answer=before_answer)
    rt = ProfileRuntime(settings, LLMRuntime(settings, chat_model=model), embedder_for(settings),
                        VectorStore(client_for(settings)), clock)
    demo = Demo(settings, make_sessionmaker(engine), rt, model,
                DemoLoad(key="", key_file=data_dir, user_ids=[], loaded=False))
    demo.first = demo.load()
    return demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return start_demo(tmp_path_factory.mktemp("demo") / "data", USERS, CATALOG_LIMIT)


@pytest.fixture
def api(demo: Demo) -> Iterator[Callable[..., Any]]:
    """Requests to the app over the demo's data, with the demo key."""
    with demo.client() as client:
        def call(method: str, url: str, **kw: Any) -> Any:
            headers = {"Authorization": f"Bearer {demo.first.key}", **kw.pop("headers", {})}
            return client.request(method, url, headers=headers, **kw)
        yield call


@pytest.mark.slow
def test_first_load_creates_the_demo_tenant_with_a_private_key(demo: Demo, api: Any) -> None:
    first = demo.first
    assert first.loaded and first.complete and first.failures == []
    assert first.user_ids == ["ml-401", "ml-454", "ml-309"]
    assert sorted(first.refreshed) == sorted(first.user_ids)
    assert first.items == CATALOG_LIMIT and first.events == 72 + 45 + 103

    key_file = demo.settings.data_dir / KEY_FILE
    assert key_file.read_text().strip() == first.key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    marker = json.loads((demo.settings.data_dir / MARKER_FILE).read_text())
    assert marker["users"] == USERS and marker["catalog_limit"] == CATALOG_LIMIT

    # The key opens the tenant the README and the inspector name.
    assert api("GET", "/v1/tenant").json()["tenant"] == DEMO_TENANT == "demo"

    r = api("GET", "/v1/items/1")  # Toy Story, one of the most rated movies
    assert r.status_code == 200, r.text
    movie = r.json()
    assert movie["title"] == "Toy Story (1995)" and movie["category"] == "movie"
    assert movie["tags"][:3] == ["Adventure", "Animation", "Children"]
    assert movie["attributes"] == {"year": 1995}


@pytest.mark.slow
def test_ratings_keep_their_order_and_end_just_before_the_load(
        demo: Demo, api: Any, ratings: dict[str, list[Interaction]]) -> None:
    for user in USERS:
        source = ratings[user]
        r = api("GET", f"/v1/users/ml-{user}/events", params={"limit": 200})
        events = list(reversed(r.json()["events"]))  # oldest first
        assert [e["event_id"] for e in events] == [f"ml-{user}-{e.item}" for e in source]
        assert [e["value"] for e in events] == [e.rating for e in source]
        assert {e["type"] for e in events} == {"rating"}
        times = [datetime.fromisoformat(e["ts"]) for e in events]
        assert times == sorted(times)
        newest_gap = datetime.now(UTC) - times[-1]  # before the load's hour, so 1 to 2 h
        assert NEWEST_BEFORE_LOAD <= newest_gap < NEWEST_BEFORE_LOAD + timedelta(minutes=70)
        assert times[-1] == times[-1].replace(minute=0, second=0)
        # Stored with the dates `rating_events` gives them, sessions respaced (the later
        # sessions went in while the load replayed them, each keeping its gaps).
        assert times == [datetime.fromisoformat(e["ts"])
                         for e in rating_events(user, source, times[-1])]


def test_the_newest_rating_is_dated_before_the_whole_hour_the_load_started_in() -> None:
    hour = datetime(2026, 3, 1, 14, tzinfo=UTC)
    for started in (hour, hour + timedelta(minutes=1), hour + timedelta(minutes=59, seconds=59,
                                                                         microseconds=9)):
        assert newest_rating_at(started) == hour - NEWEST_BEFORE_LOAD
    assert newest_rating_at(hour - timedelta(microseconds=1)) == hour - 2 * NEWEST_BEFORE_LOAD


def test_rating_events_keep_gaps_within_sessions_respace_sessions_and_compress() -> None:
    day, hour = 86_400, 3_600
    newest = datetime(2026, 3, 1, 12, tzinfo=UTC)
    # Two sessions 40 days apart: the gaps inside each are kept, the one between becomes
    # SESSION_SPACING.
    two = [Interaction("7", "a", 1_000_000, 4.0),
           Interaction("7", "b", 1_000_000 + 5 * hour, 1.5),
           Interaction("7", "c", 1_000_000 + 40 * day, 3.0),
           Interaction("7", "d", 1_000_000 + 40 * day + 2 * hour, 5.0)]
    assert [e["ts"] for e in rating_events("7", two, newest)] == [
        (newest - timedelta(hours=7) - SESSION_SPACING).isoformat(),
        (newest - timedelta(hours=2) - SESSION_SPACING).isoformat(),
        (newest - timedelta(hours=2)).isoformat(), newest.isoformat()]
    assert [e["value"] for e in rating_events("7", two, newest)] == [4.0, 1.5, 3.0, 5.0]
    assert SESSION_SPACING >= SESSION_GAP + REFRESH_AFTER  # respaced sessions stay sessions
    assert len(demo_sessions(rating_events("7", two, newest))) == 2
    # A history of gaps just under a day, longer than MAX_HISTORY_SPAN, is scaled down.
    long = [Interaction("7", str(n), 1_000_000 + n * (day - 60), 3.0) for n in range(120)]
    times = [datetime.fromisoformat(e["ts"]) for e in rating_events("7", long, newest)]
    assert times[0] == newest - MAX_HISTORY_SPAN and times[-1] == newest
    assert abs((times[5] - times[4]) - MAX_HISTORY_SPAN / 119) <= timedelta(seconds=1)


# Words the label or description of each demo user's strongest like-facet must hold: the
# script names a group after a keyword among its top tags, else the tags name it.
TASTE_WORDS = {"ml-401": re.compile(r"\banimat", re.IGNORECASE),
               "ml-454": re.compile(r"\bhorror", re.IGNORECASE),
               "ml-309": re.compile(r"\b(?:war|drama)\b", re.IGNORECASE)}


def sessions_of(user: str, ratings: dict[str, list[Interaction]]) -> int:
    return len(demo_sessions(rating_events(user, ratings[user], utcnow())))


def test_demo_sessions_cut_at_the_largest_gaps_of_a_day_or_more() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def events(hours: list[float]) -> list[dict[str, Any]]:
        return [{"event_id": f"e{n}", "ts": (start + timedelta(hours=h)).isoformat()}
                for n, h in enumerate(hours)]

    def cut(hours: list[float]) -> list[list[str]]:
        return [[e["event_id"] for e in part] for part in demo_sessions(events(hours))]

    # Gaps under SESSION_GAP never cut; of the longer ones, the two largest do.
    assert SESSION_GAP == timedelta(days=1)
    assert cut([0, 1, 23.5, 47]) == [["e0", "e1", "e2", "e3"]]
    assert cut([0, 1, 30, 31, 200, 500]) == [["e0", "e1", "e2", "e3"], ["e4"], ["e5"]]
    assert cut([0, 48, 96]) == [["e0"], ["e1"], ["e2"]]
    assert cut([0, 48, 96, 144]) == [["e0"], ["e1"], ["e2", "e3"]]  # ties: earlier gaps
    assert cut([5]) == [["e0"]] and demo_sessions([]) == []


@pytest.mark.slow
def test_each_demo_user_has_a_profile_version_per_session_of_their_own_ratings(
        demo: Demo, api: Any, ratings: dict[str, list[Interaction]]) -> None:
    rating_max = demo.settings.rating_max
    for user, user_id in zip(USERS, demo.first.user_ids, strict=True):
        profile = api("GET", f"/v1/users/{user_id}/profile").json()
        assert profile["version"] == sessions_of(user, ratings) and profile["stale"] is False
        # Each session's version is dated just after that session's last rating, so the
        # timeline follows the user's own history; the last one at load time.
        versions = list(reversed(api("GET", f"/v1/users/{user_id}/profile/history").json()[
            "versions"]))
        stamps = sorted(datetime.fromisoformat(e["ts"]) for e in api(
            "GET", f"/v1/users/{user_id}/events", params={"limit": 200}).json()["events"])
        for version in versions[:-1]:
            at = datetime.fromisoformat(version["at"])
            assert at - REFRESH_AFTER in stamps, (user_id, version)
            assert not [t for t in stamps if at - REFRESH_AFTER < t <= at], (user_id, version)
        assert datetime.fromisoformat(versions[-1]["at"]) > stamps[-1]
        assert [v["at"] for v in versions] == sorted(v["at"] for v in versions)
        assert profile["facets"], profile
        value = {e["event_id"]: e["value"] for e in api(
            "GET", f"/v1/users/{user_id}/events", params={"limit": 200}).json()["events"]}
        for facet in profile["facets"]:
            cited = {e["event_id"] for e in facet["evidence"]}
            assert cited and cited <= set(value), (user_id, facet)
            # Polarity comes from the ratings: at most half the scale is avoided.
            low = {value[e] <= 0.5 * rating_max for e in cited}
            assert low == {facet["polarity"] == "avoid"}, (user_id, facet)
        likes = sorted((f for f in profile["facets"] if f["polarity"] == "like"),
                       key=lambda f: -f["strength"])
        assert likes, profile
        words = f"{likes[0]['label']}. {likes[0]['description']}"
        assert TASTE_WORDS[user_id].search(words), (user_id, likes[0])


@pytest.mark.slow
def test_a_demo_users_first_recommendations_are_explained_and_unseen(
        demo: Demo, api: Any) -> None:
    rated = {e["item_id"] for e in api("GET", "/v1/users/ml-401/events",
                                       params={"limit": 200}).json()["events"]}
    body = api("GET", "/v1/users/ml-401/recommendations", params={"k": 10}).json()
    assert body["source"] == "profile" and len(body["items"]) == 10, body
    assert not rated & {i["item_id"] for i in body["items"]}
    for entry in body["items"]:
        because = entry["because"]
        assert because["kind"] == "facet" and because["label"] in TOPICS, entry
        assert because["evidence"], entry
        assert {e["event_id"] for e in because["evidence"]} <= {
            f"ml-401-{movie}" for movie in rated}
        assert entry["explanation"] and entry["explanation_source"] == "template"
    rid = body["recommendation_id"]
    trace = api("GET", f"/v1/recommendations/{rid}").json()
    assert trace["recommendation_id"] == rid and trace["facets"]

    # The README's chat questions, answered (here by the script) from the stored trace.
    cited = body["items"][0]["because"]["evidence"][0]["event_id"]
    demo.model.answer = lambda prompt: f"You rated it highly [{cited}]."
    r = api("POST", CHAT_PATH.format(rid), json={"message": "Why the first movie?"})
    assert r.status_code == 200 and r.json()["cited_event_ids"] == [cited], r.text
    r = api("POST", CHAT_PATH.format(rid), json={"message": "Which ratings?"}, headers=SSE)
    names = [name for name, _ in sse_events(r.text)]
    assert names[-1] == "done" and set(names[:-1]) == {"token"}, r.text


@pytest.mark.slow
def test_a_second_load_changes_nothing(demo: Demo) -> None:
    before = demo.counts()
    again = demo.load()
    assert not again.loaded and again.key == demo.first.key and again.refreshed == []
    assert demo.counts() == before


@pytest.mark.slow
def test_a_lost_key_file_gets_a_new_working_key(demo: Demo) -> None:
    (demo.settings.data_dir / KEY_FILE).unlink()
    renewed = demo.load()
    assert renewed.key != demo.first.key and not renewed.loaded
    assert (demo.settings.data_dir / KEY_FILE).read_text().strip() == renewed.key
    with demo.client() as client:
        for key in (renewed.key, demo.first.key):  # the old key still works too
            r = client.get("/v1/users/ml-454", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
    demo.first = renewed


@pytest.mark.slow
def test_a_failed_refresh_is_reported_and_retried_at_the_next_load(tmp_path: Path) -> None:
    llm_down = True

    def server() -> None:
        if llm_down:
            raise ConnectionError("the model server is down")

    demo = start_demo(tmp_path / "data", ["454"], 60, before_answer=server)
    first = demo.first
    assert first.loaded and not first.complete and first.refreshed == []
    assert re.fullmatch(r"ml-454: llm_unavailable: .*", first.failures[0]), first.failures
    # The first session's refresh failed: the replay stopped before the second session.
    assert first.items == 60 and first.events == 40
    assert not (demo.settings.data_dir / MARKER_FILE).exists()
    with demo.client() as client:
        auth = {"Authorization": f"Bearer {first.key}"}
        body = client.get("/v1/users/ml-454/recommendations", headers=auth).json()
        assert body["source"] == "popular", body

    llm_down = False
    items, events, versions, _ = demo.counts()
    retried = demo.load()
    assert retried.loaded and retried.complete and retried.refreshed == ["ml-454"]
    assert retried.events == 5 and retried.key == first.key  # the second session
    assert demo.counts()[:3] == (items, events + 5, versions + 2)
    assert (demo.settings.data_dir / MARKER_FILE).exists()
    assert not demo.load().loaded


@pytest.mark.slow
def test_a_week_old_demo_is_reloaded_at_todays_dates(tmp_path: Path) -> None:
    # Loaded eight days ago (ingestion refuses events dated in the future, so the clock
    # starts in the past and catches up with today).
    clock = Clock(utcnow().replace(microsecond=0) - timedelta(days=8))
    demo = start_demo(tmp_path / "data", ["454"], 60, clock=clock)
    assert demo.first.complete and (demo.settings.data_dir / MARKER_FILE).exists()

    def newest_and_strongest() -> tuple[datetime, float]:
        with demo.client() as client:
            auth = {"Authorization": f"Bearer {demo.first.key}"}
            events = client.get("/v1/users/ml-454/events", headers=auth,
                                params={"limit": 1}).json()["events"]
            with demo.sessions() as session:
                versions = session.scalars(select(ProfileVersion)).all()
                strongest = max((f["strength"] for v in versions for f in v.facets), default=0)
            return datetime.fromisoformat(events[0]["ts"]), strongest

    newest, _ = newest_and_strongest()
    assert newest == newest_rating_at(clock())
    clock.advance(days=6)
    assert not demo.load().loaded  # within the week: nothing to do

    clock.now = utcnow().replace(microsecond=0)
    renewed = demo.load()
    assert renewed.loaded and renewed.complete and renewed.refreshed == ["ml-454"]
    assert renewed.events == 45  # the same ratings, dated anew
    newest, strongest = newest_and_strongest()
    assert newest == newest_rating_at(clock()) and strongest > 0.05
    with demo.sessions() as session:  # the old profile went with the old user
        assert session.scalar(select(func.count()).select_from(ProfileVersion)) == 2
    assert not demo.load().loaded


@pytest.mark.slow
def test_a_database_that_lost_the_demo_is_loaded_again(tmp_path: Path) -> None:
    demo = start_demo(tmp_path / "data", ["454"], 60)
    with demo.client() as client:  # the marker stays; the data goes
        r = client.delete("/v1/users/ml-454",
                          headers={"Authorization": f"Bearer {demo.first.key}"})
        assert r.status_code in (200, 204), r.text
    again = demo.load()
    assert again.loaded and again.complete and again.refreshed == ["ml-454"]
    assert again.events == 45


@pytest.mark.slow
def test_a_load_reports_its_stages_in_order(tmp_path: Path) -> None:
    heard: list[tuple[str, int, int]] = []
    settings = Settings(data_dir=tmp_path / "data", refresh_worker=False, demo_users=["454"],
                        demo_catalog_limit=60, demo_background_raters=False)
    settings.data_dir.mkdir(parents=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    model = ChattingSummarizer(replies=[], calls=[], topics=TOPICS, chat_calls=[])
    rt = ProfileRuntime(settings, LLMRuntime(settings, chat_model=model), embedder_for(settings),
                        VectorStore(client_for(settings)), utcnow)
    load_demo(settings, make_sessionmaker(engine), rt, say=lambda _: None, progress=False,
              on_progress=lambda *where: heard.append(where))
    stages = [stage for stage, _, _ in heard]
    assert list(dict.fromkeys(stages)) == ["catalog", "ratings", "profiles"], heard
    assert ("catalog", 60, 60) in heard and heard[0] == ("catalog", 0, 60)
    assert heard[-1] == ("profiles", 1, 1)
    for stage in ("catalog", "ratings", "profiles"):
        done = [d for s, d, _ in heard if s == stage]
        assert done == sorted(done), heard


@pytest.mark.slow
def test_serve_answers_while_the_demo_loads_in_the_background(tmp_path: Path) -> None:
    """What `interest-tracker serve` does: the app serves at once and loads the demo in a
    thread; /readyz says where the load is, the refresh worker waits for it."""
    release = threading.Event()
    settings = Settings(data_dir=tmp_path / "data", demo_users=["454"], demo_catalog_limit=60,
                        demo_background_raters=False, refresh_poll_seconds=3600)
    model = ChattingSummarizer(replies=[], calls=[], topics=TOPICS, chat_calls=[],
                               before_answer=lambda: release.wait(60))
    with app_client(settings, LLMRuntime(settings, chat_model=model), demo=True) as client:
        assert client.get("/healthz").status_code == 200
        deadline = time.monotonic() + 60
        while True:  # the model holds the load at the profile refresh
            r = client.get("/readyz")
            assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready", r.text
            progress = r.json()["demo"]
            assert progress["state"] == "loading", progress
            if progress["stage"] == "profiles":
                break
            assert time.monotonic() < deadline, progress
            time.sleep(0.2)
        assert progress["done"] == 0 and progress["total"] == 1
        assert "demo loading: profiles 0/1" in r.json()["error"]["message"]
        assert client.app.state.container.worker._thread is None  # type: ignore[attr-defined]
        key = (settings.data_dir / KEY_FILE).read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}
        # Meanwhile the demo user is there with their ratings, without a profile yet.
        profile = client.get("/v1/users/ml-454/profile", headers=auth).json()
        assert profile["version"] == 0 and profile["stale"] is True, profile

        release.set()
        deadline = time.monotonic() + 60
        while (r := client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        body = r.json()
        assert body["checks"]["demo"] == "loaded"
        assert body["demo"]["state"] == "loaded" and body["demo"]["stage"] == "done"
        assert body["demo"]["error"] is None
        assert client.get("/v1/users/ml-454/profile", headers=auth).json()["version"] == 2
        assert client.app.state.container.worker._thread is not None  # type: ignore[attr-defined]
        assert (settings.data_dir / MARKER_FILE).exists()


@pytest.mark.slow
def test_a_demo_that_cannot_load_leaves_the_service_ready(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", demo_users=["999999"], demo_catalog_limit=60,
                        demo_background_raters=False, refresh_worker=False, llm_backend="fake")
    with app_client(settings, demo=True) as client:
        deadline = time.monotonic() + 60
        while (r := client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        demo = r.json()["demo"]
        assert demo["state"] == "failed" and "no ratings for demo user(s) 999999" in demo["error"]
        assert r.json()["checks"]["demo"] == "failed"


def test_demo_settings() -> None:
    assert Settings(demo_users="454, 401").demo_users == ["454", "401"]
    with pytest.raises(ValueError, match="MovieLens user ids"):
        Settings(demo_users=["ml-401"])
    assert Settings().demo_enabled and not Settings(demo=False).demo_enabled
    production = Settings(environment="production", dev_tenant=False,
                          database_url="postgresql+psycopg://x@db/interest")
    assert not production.demo_enabled


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The demo as `make run` loads it: the whole catalog, the other raters, trained
    models (the sequence model for a fixed number of epochs, `start_demo`)."""
    return start_demo(tmp_path_factory.mktemp("trained-demo") / "data", USERS, None,
                      background=True)


@pytest.mark.slow
def test_the_other_raters_are_dated_against_the_demo_users_newest_rating(
        trained_demo: Demo) -> None:
    """One anchor for every event of the load: the data set's newest rating lands where
    the demo users' newest do, however long the catalog took to load before the raters
    were sent (so two loads store the same gaps between them)."""
    dataset = load_movielens_latest()
    last = max(e.ts for e in dataset.interactions)
    with trained_demo.client() as client:
        auth = {"Authorization": f"Bearer {trained_demo.first.key}"}

        def newest(user_id: str) -> dict[str, Any]:
            r = client.get(f"/v1/users/{user_id}/events", headers=auth, params={"limit": 1})
            assert r.status_code == 200, r.text
            return dict(r.json()["events"][0])

        anchor = datetime.fromisoformat(newest("ml-454")["ts"])
        for rater in ("ml-1", "ml-414", "ml-610"):
            event = newest(rater)
            [rated] = [e for e in dataset.interactions
                       if demo_user_id(e.user) == rater and e.item == event["item_id"]]
            expected = anchor - timedelta(seconds=last - rated.ts)
            assert datetime.fromisoformat(event["ts"]) == expected, (rater, event)


# What each demo user's list should mostly be (ISSUE: 6 of 10 with one of these genres).
ON_TASTE = {"ml-401": {"Animation", "Children"}, "ml-454": {"Horror", "Thriller"},
            "ml-309": {"Drama", "War", "Western"}}


@pytest.mark.slow
def test_trained_demo_lists_are_hybrid_unseen_on_taste_and_explained_by_own_events(
        trained_demo: Demo) -> None:
    """The load trains the tenant's models from the other raters, so the demo users' lists
    are the hybrid ones, calibrated to the tags of their facets' evidence; each reason
    cites the user's own events; and at least 6 of each user's 10 items have one of the
    genres of their taste (ON_TASTE, the issue's check of the demo lists). The load is
    deterministic (`start_demo`), so this passes or fails for good, not by load."""
    genres = {m.item_id: set(m.genres) for m in load_movielens_latest().items.values()}
    first = trained_demo.first
    assert first.complete and first.models_version is not None, first
    counts: dict[str, int] = {}
    with trained_demo.client() as client:
        auth = {"Authorization": f"Bearer {first.key}"}
        for user_id in ("ml-401", "ml-454", "ml-309"):
            mine = {e["event_id"]: e["item_id"] for e in client.get(
                f"/v1/users/{user_id}/events", headers=auth,
                params={"limit": 200}).json()["events"]}
            body = client.get(f"/v1/users/{user_id}/recommendations", headers=auth,
                              params={"k": 10}).json()
            assert body["source"] == "hybrid" and len(body["items"]) == 10, body
            counts[user_id] = sum(1 for i in body["items"]
                                  if genres[i["item_id"]] & ON_TASTE[user_id])
            stored = client.get(f"/v1/recommendations/{body['recommendation_id']}",
                                headers=auth).json()["parameters"]
            assert stored["calibration"] > 0 and stored["calibration_target"], stored
            assert not set(mine.values()) & {i["item_id"] for i in body["items"]}
            explained = [i for i in body["items"] if i["because"] is not None]
            assert len(explained) >= 6, body
            for entry in explained:
                cited = {e["event_id"] for e in entry["because"]["evidence"]}
                assert cited and cited <= set(mine), (user_id, entry)
    assert min(counts.values()) >= 6, f"on-taste items of 10 per demo user: {counts}"


def test_the_demo_trains_for_fixed_epochs_unless_told_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run`'s first training of the demo fits the sequence model for
    `DEMO_SEQUENCE_EPOCHS` (the same models on any machine), or the epochs an operator set;
    the settings the service runs with are left as they are."""
    from service.demo import load
    from service.training import jobs

    seen: list[int | None] = []

    def spy(session: Session, tenant_id: int, settings: Settings, vectors: Any,
            progress: bool = False) -> Any:
        seen.append(settings.train_sequence_epochs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(jobs, "train_with_ranker", spy)
    sessions = make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'demo.db'}"))
    for settings in (Settings(), Settings(train_sequence_epochs=3)):
        rt = SimpleNamespace(settings=settings, vectors=None)
        result = DemoLoad(key="", key_file=tmp_path, user_ids=[], loaded=False)
        load._train_models(sessions, 1, result, rt, lambda _: None, False)  # type: ignore[arg-type]
        assert result.training_problem == "RuntimeError: stop here"
    assert seen == [load.DEMO_SEQUENCE_EPOCHS, 3]
    assert Settings().train_sequence_epochs is None
