from __future__ import annotations

import sqlite3
import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy import create_engine


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["vector_store"] == "ok"


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.patch("/healthz")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_readiness_reports_a_dead_database(client: TestClient) -> None:
    container = client.app.state.container  # type: ignore[attr-defined]
    container.engine.dispose()
    container.engine = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_readiness_reports_an_unreachable_vector_store(client: TestClient) -> None:
    from service.vectors.store import VectorStore

    class DeadServer:  # what a Chroma client does when its server went away
        def heartbeat(self) -> int:
            raise ConnectionError("connection refused")

    client.app.state.container.vectors = VectorStore(  # type: ignore[attr-defined]
        DeadServer())  # type: ignore[arg-type]
    r = client.get("/readyz")
    assert r.status_code == 503 and "vector_store unreachable" in r.json()["error"]["message"]


def test_a_slow_database_check_does_not_hold_up_other_requests(client: TestClient) -> None:
    def slow_connect() -> sqlite3.Connection:
        time.sleep(3)
        return sqlite3.connect(":memory:")

    container = client.app.state.container  # type: ignore[attr-defined]
    container.engine = create_engine("sqlite://", creator=slow_connect)
    readiness = threading.Thread(target=client.get, args=("/readyz",))
    readiness.start()
    time.sleep(0.5)  # /readyz is now waiting for its connection
    started = time.monotonic()
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 2, "/readyz blocked the event loop"
    readiness.join()
