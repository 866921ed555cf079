"""Shared fixtures: a real app on a real database (SQLite always, PostgreSQL when present).

The helpers these fixtures use, and the ones tests import, live in tests/utils/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from service.vectors.embeddings import Embedder, shared_local_embedder
from tests.utils.api import ApiTenant, make_tenant
from tests.utils.embeddings import HashedWordsEmbedder
from tests.utils.postgres import postgres_reason, temporary_database
from tests.utils.servers import free_port, wait_until_ready


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    reason = postgres_reason()
    if reason:
        if os.environ.get("CI") and os.environ.get("INTEREST_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    with temporary_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The background worker is tested on its own; elsewhere it would race the test.
    return Settings(data_dir=tmp_path / "data", database_url=database_url,
                    refresh_worker=False)


@pytest.fixture
def embedder(request: pytest.FixtureRequest) -> Embedder:
    """What the test's app embeds with: MiniLM in tests marked `slow` (the real parts),
    else hashed words, which load nothing and give the same vectors on every run."""
    if request.node.get_closest_marker("slow"):
        return shared_local_embedder()
    return HashedWordsEmbedder()


@pytest.fixture
def client(settings: Settings, embedder: Embedder) -> Iterator[TestClient]:
    with TestClient(create_app(settings, embedder=embedder)) as test_client:
        yield test_client


@pytest.fixture
def tenant(client: TestClient) -> ApiTenant:
    return make_tenant(client, "acme")


@pytest.fixture
def other_tenant(client: TestClient) -> ApiTenant:
    return make_tenant(client, "globex")


@pytest.fixture(scope="session")
def embedded_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real embedded model (llama.cpp serving SmolLM2-135M), shared by the session."""
    from service.llm.runtime import LLMRuntime

    runtime = LLMRuntime(Settings(data_dir=tmp_path_factory.mktemp("llm"), llm_backend="embedded"))
    yield runtime
    runtime.close()


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
