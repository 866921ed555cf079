"""Down, slow and garbage-speaking model servers, over real HTTP (ChatOpenAI as in production).

Whatever the server does, stored data stays as it was, the run is recorded as failed,
and the user stays stale.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from service.vectors.embeddings import Embedder
from tests.utils.api import activity_for, app_client, make_tenant
from tests.utils.servers import free_port


class FakeOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose behaviour the test chooses."""

    mode = "garbage"
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if self.mode == "slow":
            time.sleep(5)
        content = "I am sorry, here are some interests: jazz!" if self.mode == "garbage" else "{}"
        reply = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        }).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): that is the point of "slow"

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[tuple[str, type[FakeOpenAI]]]:
    handler = type("Handler", (FakeOpenAI,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()


def check_nothing_changed(t: Any, status: int, code: str) -> dict[str, Any]:
    r = t.post("/v1/users/u1/summaries")
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    runs = t.get("/v1/users/u1/summaries").json()["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "failed" and runs[0]["error_code"] == code
    user = t.get("/v1/users/u1").json()
    assert user["stale"] is True and user["events_since_refresh"] == 5 and user["event_count"] == 5
    return dict(runs[0])


def openai_settings(tmp_path: Path, url: str, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", llm_backend="openai", llm_base_url=url,
                    llm_model="served-model", **kw)


def test_down_server(tmp_path: Path, embedder: Embedder) -> None:
    settings = openai_settings(tmp_path, f"http://127.0.0.1:{free_port()}/v1", llm_max_retries=1)
    with app_client(settings, LLMRuntime(settings), embedder=embedder) as client:
        t = make_tenant(client, "acme")
        activity_for(t)
        run = check_nothing_changed(t, 503, "llm_unavailable")
        assert "Connection" in (run["error"] or "")
        assert client.get("/readyz").status_code == 503


def test_slow_server_times_out_with_bounded_retries(
    tmp_path: Path, fake_server: tuple[str, type[FakeOpenAI]], embedder: Embedder
) -> None:
    url, handler = fake_server
    handler.mode = "slow"
    settings = openai_settings(tmp_path, url, llm_timeout_seconds=1, llm_max_retries=1)
    with app_client(settings, LLMRuntime(settings), embedder=embedder) as client:
        t = make_tenant(client, "acme")
        activity_for(t)
        started = time.monotonic()
        check_nothing_changed(t, 503, "llm_unavailable")
        assert time.monotonic() - started < 15
    assert len(handler.requests) == 2  # the call and one retry, then it gives up


def test_garbage_answers_get_one_repair_then_the_names_come_from_tags(
    tmp_path: Path, fake_server: tuple[str, type[FakeOpenAI]], embedder: Embedder
) -> None:
    """A server that answers garbage costs one repair per question; then each group is
    named from its tags and the narrative from the labels. Evidence and polarity never
    came from the model, so the profile is still written."""
    url, handler = fake_server
    handler.mode = "garbage"
    settings = openai_settings(tmp_path, url, llm_max_retries=0)
    with app_client(settings, LLMRuntime(settings), embedder=embedder) as client:
        t = make_tenant(client, "acme")
        activity_for(t)
        r = t.post("/v1/users/u1/profile/refresh")
        assert r.status_code == 200, r.text
        [run] = t.get("/v1/users/u1/summaries").json()["runs"]
        assert t.get("/v1/users/u1").json()["stale"] is False
    assert run["status"] == "ok" and run["summary"]["facets"]
    assert {f["label_source"] for f in run["summary"]["facets"]} == {"fallback"}
    assert run["summary"]["narrative_source"] == "fallback"
    asked, repairs = handler.requests[0::2], handler.requests[1::2]
    assert len(asked) == len(repairs) >= 2 and run["attempts"] == len(handler.requests)
    for first, repair in zip(asked, repairs, strict=True):
        assert first["response_format"]["type"] == "json_schema"
        assert "could not be used" in repair["messages"][-1]["content"]
    naming = asked[0]["response_format"]["json_schema"]["schema"]
    assert {"label", "description", "horizon", "noise"} <= set(naming["properties"])
