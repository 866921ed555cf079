from __future__ import annotations

from fastapi.testclient import TestClient


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
    client.app.state.engine.dispose()  # type: ignore[attr-defined]
    from sqlalchemy import create_engine

    client.app.state.engine = create_engine(  # type: ignore[attr-defined]
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def test_readiness_reports_an_unreachable_vector_store(client: TestClient) -> None:
    from service.vectors.store import VectorStore

    class DeadServer:  # what a Chroma client does when its server went away
        def heartbeat(self) -> int:
            raise ConnectionError("connection refused")

    client.app.state.vectors = VectorStore(DeadServer())  # type: ignore[arg-type, attr-defined]
    r = client.get("/readyz")
    assert r.status_code == 503 and "vector_store unreachable" in r.json()["error"]["message"]
