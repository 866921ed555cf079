"""Shared fixtures: a real app on a real database (SQLite always, PostgreSQL when present)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.core.config import Settings
from service.main import create_app
from service.tenants.service import create_tenant
from tests.servers import free_port, wait_until_ready

PG_ADMIN_URL = os.environ.get(
    "INTEREST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_unavailable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # the reason is shown in the skip message
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}: {exc}"
    return None


_PG_REASON: str | None | bool = False


def postgres_reason() -> str | None:
    global _PG_REASON
    if _PG_REASON is False:
        _PG_REASON = _postgres_unavailable()
    return _PG_REASON  # type: ignore[return-value]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    reason = postgres_reason()
    if reason:
        if os.environ.get("CI") and os.environ.get("INTEREST_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"it_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The background worker is tested on its own; elsewhere it would race the test.
    return Settings(data_dir=tmp_path / "data", database_url=database_url,  # type: ignore[arg-type]
                    refresh_worker=False)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@dataclass
class ApiTenant:
    """A tenant with its key, and a client that always sends that key."""

    name: str
    key: str
    client: TestClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def request(self, method: str, url: str, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kw)

    def get(self, url: str, **kw: Any) -> Any:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> Any:
        return self.request("PUT", url, **kw)

    def delete(self, url: str, **kw: Any) -> Any:
        return self.request("DELETE", url, **kw)


def make_tenant(client: TestClient, name: str) -> ApiTenant:
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        _, key = create_tenant(session, name)
    return ApiTenant(name=name, key=key, client=client)


@pytest.fixture
def tenant(client: TestClient) -> ApiTenant:
    return make_tenant(client, "acme")


@pytest.fixture
def other_tenant(client: TestClient) -> ApiTenant:
    return make_tenant(client, "globex")


def iso(ts: datetime) -> str:
    return ts.isoformat()


NOW = datetime.now(UTC).replace(microsecond=0)


def item(item_id: str, **kw: Any) -> dict[str, Any]:
    return {"item_id": item_id, "title": kw.pop("title", f"Title of {item_id}"), **kw}


def event(
    user_id: str, type_: str = "view", item_id: str | None = "i1", **kw: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": user_id,
        "type": type_,
        "ts": iso(kw.pop("ts", NOW - timedelta(minutes=5))),
    }
    if item_id is not None:
        body["item_id"] = item_id
    body.update(kw)
    return body


@pytest.fixture(scope="session")
def embedded_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real embedded model (llama.cpp serving SmolLM2-135M), shared by the session."""
    from service.llm.runtime import LLMRuntime

    runtime = LLMRuntime(Settings(data_dir=tmp_path_factory.mktemp("llm"), llm_backend="embedded"))
    yield runtime
    runtime.close()


def app_client(settings: Settings, llm: Any = None, **kw: Any) -> TestClient:
    """A TestClient (use it as a context manager) for an app with this LLM runtime."""
    return TestClient(create_app(settings, llm=llm, **kw))


def activity_for(t: ApiTenant, user_id: str = "u1") -> list[dict[str, Any]]:
    """A small, coherent history: a sci-fi fan who dislikes romance."""
    t.put("/v1/items", json={"items": [
        item("m1", title="Alien", description="Space horror aboard a cargo ship",
             tags=["sci-fi", "horror"], category="movie"),
        item("m2", title="Blade Runner", description="A detective hunts replicants",
             tags=["sci-fi", "noir"], category="movie"),
        item("m3", title="The Martian", description="An astronaut stranded on Mars",
             tags=["sci-fi", "space"], category="movie"),
        item("m4", title="The Notebook", description="A romance across decades",
             tags=["romance", "drama"], category="movie"),
    ]})
    events = [
        event(user_id, "rating", "m1", value=5, ts=NOW - timedelta(days=3), event_id="r1"),
        event(user_id, "rating", "m2", value=4.5, ts=NOW - timedelta(days=2), event_id="r2"),
        event(user_id, "like", "m3", ts=NOW - timedelta(days=1), event_id="l3"),
        event(user_id, "rating", "m4", value=1, ts=NOW - timedelta(hours=20), event_id="r4"),
        event(user_id, "search", None, text="space exploration films",
              ts=NOW - timedelta(hours=2), event_id="s5"),
    ]
    r = t.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    return events


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` server on loopback, shared by the session."""
    path = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = path / "server.log"
    chroma = Path(sys.executable).parent / "chroma"
    with log.open("w") as out:
        proc = subprocess.Popen([str(chroma), "run", "--path", str(path / "db"), "--host",
                                 "127.0.0.1", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc, log, 60, "chroma")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
