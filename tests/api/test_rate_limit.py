"""Per-tenant rate limits: a tenant over its rate gets 429 with Retry-After; others and
unauthenticated probes are not counted against it; a malformed rate is refused at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.core.config import Settings
from service.main import create_app
from service.tenants.service import create_tenant
from service.vectors.embeddings import Embedder


class Tenant:
    """A tenant's key and a client that sends it."""

    def __init__(self, client: TestClient, name: str) -> None:
        with client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
            _, self.key = create_tenant(session, name)
        self.client = client

    def get(self, url: str) -> Any:
        return self.client.get(url, headers={"Authorization": f"Bearer {self.key}"})

    def post(self, url: str, json: Any) -> Any:
        return self.client.post(url, json=json,
                                headers={"Authorization": f"Bearer {self.key}"})


def test_a_tenant_over_its_rate_gets_429_with_retry_after(tmp_path: Path,
                                                          embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path / "data", refresh_worker=False,
                        tenant_rate_limit="3/minute")
    with TestClient(create_app(settings, embedder=embedder)) as client:
        acme, globex = Tenant(client, "acme"), Tenant(client, "globex")
        for _ in range(3):
            assert acme.get("/v1/users").status_code == 200
        r = acme.get("/v1/users")
        assert r.status_code == 429, r.text
        body = r.json()["error"]
        assert body["code"] == "rate_limited" and "3/minute" in body["message"], body
        assert 1 <= int(r.headers["Retry-After"]) <= 60, r.headers
        # Every kind of request counts, and the refusal is not a free pass either.
        assert acme.post("/v1/events", json={"events": []}).status_code == 429
        # Another tenant has its own window; health checks and bad keys are not counted.
        assert globex.get("/v1/users").status_code == 200
        assert client.get("/healthz").status_code == 200
        bad = client.get("/v1/users", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401


def test_no_limit_by_default(client: TestClient) -> None:
    acme = Tenant(client, "acme")
    assert all(acme.get("/v1/users").status_code == 200 for _ in range(30))


@pytest.mark.parametrize("rate", ["lots", "3/fortnight", "-1/minute"])
def test_a_malformed_rate_is_refused_with_a_clear_message(tmp_path: Path, rate: str) -> None:
    with pytest.raises(ValidationError, match="not a rate limit"):
        Settings(data_dir=tmp_path, tenant_rate_limit=rate)
