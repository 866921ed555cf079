"""schemathesis over our OpenAPI schema: no input may produce a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from service.core.config import Settings
from service.main import create_app
from service.tenants.service import create_tenant
from tests.utils.api import event, item
from tests.utils.embeddings import HashedWordsEmbedder

_KEY: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data = Path(tmp_path_factory.mktemp("fuzz"))
    # The fake LLM and embedder: this test is about HTTP inputs, not about the models.
    app = create_app(Settings(data_dir=data, llm_backend="fake", refresh_worker=False),
                     embedder=HashedWordsEmbedder())
    with TestClient(app) as client:
        with app.state.container.sessions() as session:
            _, key = create_tenant(session, "fuzz")
        _KEY["key"] = key
        auth = {"Authorization": f"Bearer {key}"}
        # Some real rows, so generated ids sometimes hit something.
        client.put("/v1/items", headers=auth, json={"items": [item("0"), item("A"), item("i1")]})
        client.post("/v1/events", headers=auth, json={"events": [
            event("0", "view", "0"), event("A", "like", "A")]})
        yield app


OPERATIONS = [
    ("GET", "/healthz"), ("GET", "/readyz"), ("PUT", "/v1/items"), ("GET", "/v1/items/{item_id}"),
    ("POST", "/v1/events"), ("GET", "/v1/users"), ("GET", "/v1/tenant"),
    ("GET", "/v1/users/{user_id}/events"),
    ("DELETE", "/v1/users/{user_id}"), ("GET", "/v1/users/{user_id}"),
    ("POST", "/v1/users/{user_id}/summaries"), ("GET", "/v1/users/{user_id}/summaries"),
    ("POST", "/v1/users/{user_id}/profile/refresh"), ("GET", "/v1/users/{user_id}/profile"),
    ("GET", "/v1/users/{user_id}/profile/history"),
    ("GET", "/v1/users/{user_id}/profile/forecast"),
    ("PATCH", "/v1/users/{user_id}/profile/facets/{facet_id}"),
    ("DELETE", "/v1/users/{user_id}/profile/facets/{facet_id}"),
    ("GET", "/v1/users/{user_id}/recommendations"),
    ("GET", "/v1/recommendations/{recommendation_id}"),
    ("POST", "/v1/recommendations/{recommendation_id}/chat"),
    ("GET", "/v1/recommendations/{recommendation_id}/chat"),
]


def test_every_operation_is_fuzzed(fuzz_app: FastAPI) -> None:
    api = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    labels = set()
    for op in api.get_all_operations():
        assert isinstance(op, Ok), op.err()
        labels.add(op.ok().label)
    assert labels == {f"{m} {p}" for m, p in OPERATIONS}


# Negative cases need an input to break; the health routes take none.
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if p.startswith("/v1")
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_input_causes_a_server_error(
    fuzz_app: FastAPI, method: str, path: str, mode: GenerationMode
) -> None:
    api = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operation = api[path][method]
    # With a real key, generated requests reach the handlers rather than stopping at 401.
    headers = {"Authorization": f"Bearer {_KEY['key']}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    run()
