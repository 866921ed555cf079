"""The service as it runs beyond one machine, on loopback: a Chroma server, a fake
OpenAI-compatible model server, API replicas and worker processes on one PostgreSQL
database. Shared by tests/load/ and benchmarks/load.py.

The fake model answers the two refresh prompts (routed on the JSON schema asked for,
never on the prompt's wording) and `/v1/embeddings` (a deterministic vector per text,
so no process loads the local embedding model); its `mode` plays a healthy, a failing
(500) or a slow server.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from tests.utils.servers import free_port, stop_process, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "service.cli"]
EMBEDDING_DIMENSIONS = 384
TAGS = ["sci-fi", "space", "horror", "romance", "drama", "noir", "comedy", "jazz",
        "cooking", "travel", "chess", "gardening"]

FakeMode = Literal["ok", "fail", "slow"]


class FakeModelHandler(BaseHTTPRequestHandler):
    """One OpenAI-compatible server; the class attributes are its state (one subclass
    per server, see `FakeModelServer`)."""

    mode: FakeMode = "ok"
    slow_seconds = 2.0
    lock = threading.Lock()
    chat_in_flight = 0
    answered: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path.endswith("/models"):  # the service's readiness check
            self._send(200, {"object": "list", "data": [{"id": "fake-model",
                                                         "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/embeddings"):
            self._send(200, _embeddings(body))
            return
        cls = type(self)
        mode = cls.mode
        with cls.lock:
            cls.answered[mode] = cls.answered.get(mode, 0) + 1
            cls.chat_in_flight += 1
        try:
            if mode == "fail":
                self._send(500, {"error": {"message": "the fake model is down",
                                           "type": "server_error"}})
                return
            if mode == "slow":
                time.sleep(cls.slow_seconds)
            self._send(200, _completion(body))
        finally:
            with cls.lock:
                cls.chat_in_flight -= 1

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout, or it was killed)

    def log_message(self, *args: Any) -> None:
        pass


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    rows = []
    for n, text in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(str(text).encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).standard_normal(EMBEDDING_DIMENSIONS)
        vector /= np.linalg.norm(vector)
        rows.append({"object": "embedding", "index": n, "embedding": vector.tolist()})
    return {"object": "list", "data": rows, "model": body.get("model", "fake"),
            "usage": {"prompt_tokens": 1, "total_tokens": 1}}


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema", {})
    properties = schema.get("properties", {})
    if "narrative" in properties:
        answer: dict[str, Any] = {"narrative": "Enjoys the topics listed, most of all the first."}
    else:
        answer = {"label": "Films about space travel", "horizon": "long", "noise": False,
                  "description": "Watches films set in space."}
    return {"id": "fake", "object": "chat.completion", "created": 0,
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(answer)}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}


@dataclass
class FakeModelServer:
    url: str
    handler: type[FakeModelHandler]
    server: ThreadingHTTPServer

    def set_mode(self, mode: FakeMode) -> None:
        self.handler.mode = mode

    @property
    def chat_in_flight(self) -> int:
        return self.handler.chat_in_flight


@contextmanager
def fake_model_server() -> Iterator[FakeModelServer]:
    handler = type("Handler", (FakeModelHandler,), {
        "lock": threading.Lock(), "answered": {}, "chat_in_flight": 0, "mode": "ok"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeModelServer(f"http://127.0.0.1:{server.server_address[1]}/v1", handler,
                              server)
    finally:
        server.shutdown()
        server.server_close()


class ChromaServer:
    """`chroma run` on a fixed port and folder, so it can be killed and started again."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "chroma-db"
        self.port = free_port()
        self.log = workdir / "chroma.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, seconds: float = 60) -> None:
        chroma = Path(sys.executable).parent / "chroma"
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1",
                 "--port", str(self.port)], stdout=out, stderr=subprocess.STDOUT)
        wait_until_ready(f"{self.url}/api/v2/heartbeat", self.proc, self.log, seconds,
                         "chroma")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@dataclass
class Process:
    """An `interest-tracker` child process with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} ---\n{self.log.read_text(errors='replace')[-chars:]}"

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)


@dataclass
class Stack:
    """The running service: start it with `running_stack`."""

    workdir: Path
    database_url: str
    chroma: ChromaServer
    model: FakeModelServer
    env: dict[str, str]
    key: str = ""
    apis: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    retired: list[Process] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def _spawn(self, name: str, args: list[str], port: int | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen([*CLI, *args], cwd=self.workdir, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT)
        return Process(name, proc, log, port)

    def create_tenant(self, name: str = "load") -> None:
        """Through the CLI, before any server starts (it also migrates the database)."""
        run = subprocess.run([*CLI, "tenants", "create", name], cwd=self.workdir,
                             env=self.env, capture_output=True, text=True, timeout=120,
                             check=True)
        self.key = run.stdout.strip().splitlines()[-1]

    def start_apis(self, count: int, seconds: float = 90) -> None:
        started = [self._spawn(f"api-{n}", ["serve", "--port", str(port)], port)
                   for n, port in ((n, free_port()) for n in range(count))]
        self.apis.extend(started)
        for api in started:
            wait_until_ready(f"{api.url}/readyz", api.proc, api.log, seconds, api.name)

    def restart_api(self, index: int, seconds: float = 90) -> None:
        """SIGKILL API replica `index` and start a new one on the same port."""
        old = self.apis[index]
        old.proc.kill()
        old.proc.wait(timeout=20)
        self.retired.append(old)
        new = self._spawn(f"{old.name}-restarted", ["serve", "--port", str(old.port)],
                          old.port)
        self.apis[index] = new
        wait_until_ready(f"{new.url}/readyz", new.proc, new.log, seconds, new.name)

    def start_worker(self) -> Process:
        worker = self._spawn(f"worker-{len(self.workers) + len(self.retired)}", ["worker"])
        self.workers.append(worker)
        return worker

    def worker_pids(self) -> dict[int, Process]:
        return {w.proc.pid: w for w in self.workers if w.proc.poll() is None}

    def put_items(self, count: int, start: int = 0, edition: str = "",
                  api: int = 0) -> httpx.Response:
        items = [{"item_id": f"m{n}", "title": f"Film number {n}{edition}",
                  "description": f"A film about {TAGS[n % len(TAGS)]}",
                  "tags": [TAGS[n % len(TAGS)], TAGS[(n * 7 + 3) % len(TAGS)]],
                  "category": "movie"} for n in range(start, start + count)]
        r = httpx.put(f"{self.apis[api].url}/v1/items", json={"items": items},
                      headers=self.headers, timeout=60)
        r.raise_for_status()
        return r

    def logs(self) -> str:
        return "\n".join(p.tail() for p in [*self.apis, *self.workers, *self.retired])

    def stop(self) -> None:
        for p in [*self.workers, *self.apis]:
            p.stop()


def stack_env(workdir: Path, database_url: str, chroma_url: str, model_url: str,
              **overrides: str) -> dict[str, str]:
    """The environment every process of the stack shares: INTEREST_ settings only from here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEREST_")}
    settings = {
        "DATABASE_URL": database_url, "CHROMA_URL": chroma_url,
        "DATA_DIR": str(workdir / "data"), "DEMO": "false", "DEV_TENANT": "false",
        "REFRESH_WORKER": "false",
        "LLM_BACKEND": "openai", "LLM_BASE_URL": model_url, "LLM_MODEL": "fake-model",
        "LLM_API_KEY": "fake", "LLM_TIMEOUT_SECONDS": "5", "LLM_MAX_RETRIES": "0",
        "EMBEDDING_BACKEND": "openai", "EMBEDDING_BASE_URL": model_url,
        "EMBEDDING_MODEL": "fake-embedding",
        "EMBEDDING_DIMENSIONS": str(EMBEDDING_DIMENSIONS),
        "REFRESH_AFTER_EVENTS": "1", "REFRESH_POLL_SECONDS": "0.3",
        "SUMMARY_MODEL_GROUPS": "2",
        # A killed worker's job is free again within seconds; failed jobs retry quickly.
        "JOB_LEASE_SECONDS": "6", "JOB_RETRY_BASE_SECONDS": "0.5",
        "JOB_RETRY_MAX_SECONDS": "2", "JOB_MAX_ATTEMPTS": "100",
        # Training is not under test here: once at most, quickly.
        "TRAIN_SEQUENCE_SECONDS": "1", "TRAIN_AFTER_EVENTS": "100000000",
        "TRAIN_MAX_AGE_HOURS": "100000",
    }
    settings.update(overrides)
    env.update({f"INTEREST_{name}": value for name, value in settings.items()})
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@contextmanager
def running_stack(workdir: Path, database_url: str, apis: int = 2, workers: int = 2,
                  items: int = 40, overrides: Mapping[str, str] | None = None
                  ) -> Iterator[Stack]:
    """Chroma, the fake model, a tenant with items, `apis` API replicas and `workers`
    workers; everything stopped afterwards (logs kept in `workdir`). `overrides` are
    settings for every process (`stack_env`'s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    chroma = ChromaServer(workdir)
    chroma.start()
    try:
        with fake_model_server() as model:
            env = stack_env(workdir, database_url, chroma.url, model.url, **(overrides or {}))
            stack = Stack(workdir, database_url, chroma, model, env)
            try:
                stack.create_tenant()
                stack.start_apis(apis)
                stack.put_items(items)
                for _ in range(workers):
                    stack.start_worker()
                yield stack
            finally:
                stack.stop()
    finally:
        chroma.stop()


def served_model(base_url: str | None, model: str, timeout_seconds: int) -> dict[str, str]:
    """Stack settings that send refreshes to the model at `base_url` (none: the fake)."""
    if not base_url:
        return {}
    return {"LLM_BASE_URL": base_url, "LLM_MODEL": model,
            "LLM_TIMEOUT_SECONDS": str(timeout_seconds)}


def event_time(seconds_ago: float = 60) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


@dataclass
class Outcome:
    kind: str  # events | profile | recommendations
    status: int  # 0: no answer (connection error or timeout)
    at: float  # time.monotonic() when the answer came
    seconds: float
    error: str = ""  # with status 0: the transport error's class (ReadTimeout, ...)


@dataclass
class LoadDriver:
    """Threads sending a steady mix, round-robin over the API replicas, until `stop`:
    one event batch (unique event ids), then a profile read and a recommendations call.
    A batch answered 503 or not at all is sent again (events are idempotent by id) until
    it is accepted or `give_up_after` seconds pass."""

    stack: Stack
    users: int = 12
    batch_size: int = 3
    give_up_after: float = 60.0
    timeout: float = 10.0
    outcomes: list[Outcome] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    unconfirmed: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, threads: int = 3) -> None:
        for n in range(threads):
            thread = threading.Thread(target=self._run, args=(n,), name=f"driver-{n}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.give_up_after + 30)

    def _record(self, kind: str, status: int, started: float, error: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            self.outcomes.append(Outcome(kind, status, now, now - started, error))

    def _call(self, client: httpx.Client, kind: str, method: str, url: str,
              **kw: Any) -> int:
        started = time.monotonic()
        error = ""
        try:
            status = client.request(method, url, headers=self.stack.headers,
                                    timeout=self.timeout, **kw).status_code
        except httpx.TransportError as exc:
            status, error = 0, type(exc).__name__
        self._record(kind, status, started, error)
        return status

    def _run(self, thread: int) -> None:
        apis = [api.url for api in self.stack.apis]
        n = 0
        with httpx.Client() as client:
            while not self._stop.is_set():
                user = f"u{(thread * 7 + n) % self.users}"
                ids = [f"t{thread}-b{n}-e{k}" for k in range(self.batch_size)]
                events = [{"event_id": event_id, "user_id": user, "type": "view",
                           "item_id": f"m{(n * 5 + k * 3 + thread) % 40}",
                           "ts": event_time(60)} for k, event_id in enumerate(ids)]
                with self._lock:
                    self.sent.update(ids)
                give_up = time.monotonic() + self.give_up_after
                attempt = 0
                while True:
                    api = apis[(n + attempt) % len(apis)]
                    status = self._call(client, "events", "POST", f"{api}/v1/events",
                                        json={"events": events})
                    attempt += 1
                    if 200 <= status < 300:
                        with self._lock:
                            self.accepted.update(ids)
                        break
                    if status not in (0, 503) or time.monotonic() > give_up:
                        with self._lock:
                            self.unconfirmed.update(ids)
                        break
                    time.sleep(0.2)
                api = apis[n % len(apis)]
                self._call(client, "profile", "GET", f"{api}/v1/users/{user}/profile")
                self._call(client, "recommendations", "GET",
                           f"{api}/v1/users/{user}/recommendations")
                n += 1

    def status_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for outcome in self.outcomes:
            by_kind = counts.setdefault(outcome.kind, {})
            key = str(outcome.status) if outcome.status else f"no_answer:{outcome.error}"
            by_kind[key] = by_kind.get(key, 0) + 1
        return {kind: dict(sorted(c.items())) for kind, c in sorted(counts.items())}
