"""A real service on loopback (uvicorn in a thread of the test process, so its model can
be the scripted one) that loads a small demo in the background, and Debian's Chromium
driven by Playwright. Nothing downloads a browser: without /usr/bin/chromium (or
INTEREST_TEST_CHROMIUM) and Playwright the browser tests are skipped, saying why."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from service.main import create_app
from tests.chat.helpers import ChattingSummarizer
from tests.servers import free_port

# The scripted model names a group after the first keyword among its tags (else by tags).
TOPICS = {
    "Animated films": ("animation", "Animated family films.", "like"),
    "Comedies": ("comedy", "Light comedies.", "like"),
    "Dramas": ("drama", "Serious dramas.", "like"),
    "Action films": ("action", "Action and adventure.", "like"),
}
CHROMIUM = os.environ.get("INTEREST_TEST_CHROMIUM") or shutil.which("chromium") or ""


def browser_unavailable() -> str | None:
    if not CHROMIUM or not Path(CHROMIUM).exists():
        return ("Debian's chromium is not installed (make setup installs it: "
                "apt-get install -y chromium chromium-driver)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@dataclass
class LogLines(logging.Handler):
    """Every line the service logs while it runs (uvicorn's access log included)."""

    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __hash__(self) -> int:
        return id(self)


@dataclass
class Inspector:
    url: str
    data_dir: Path
    model: ChattingSummarizer
    release_model: threading.Event
    logs: LogLines
    printed: list[str]

    def demo_key(self) -> str:
        key_file = self.data_dir / "demo-api-key"
        deadline = time.monotonic() + 30
        while not key_file.exists():
            if time.monotonic() > deadline:
                pytest.fail("the demo key was never written")
            time.sleep(0.1)
        return key_file.read_text().strip()


def cite_first_event(prompt: str) -> str:
    """The scripted why-answer: cites the first of the user's events in the trace."""
    found = re.search(r"\bml-401-\d+\b", prompt)
    cited = f" [{found.group(0)}]" if found else ""
    return (f"You gave high ratings to animated family films{cited}, and this one "
            "shares their genres, so it came first in your list.")


@pytest.fixture(scope="module")
def inspector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspector]:
    """`serve` as `make run` does it, with a demo of one user and 150 movies; the model's
    first answer waits for `release_model`, so the demo is seen loading."""
    reason = browser_unavailable()
    if reason:
        pytest.skip(reason)  # before starting a server no browser will visit
    data_dir = tmp_path_factory.mktemp("inspector") / "data"
    settings = Settings(data_dir=data_dir, demo_users=["401"], demo_catalog_limit=150,
                        demo_background_raters=False, refresh_worker=False)
    release = threading.Event()
    model = ChattingSummarizer(replies=[], calls=[], topics=TOPICS, chat_calls=[],
                               before_answer=lambda: release.wait(120),
                               answer=cite_first_event)
    logs = LogLines()
    logs.setFormatter(logging.Formatter("%(name)s %(message)s"))
    watched = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.access",
                                                    "uvicorn.error")]
    for logger in watched:
        logger.addHandler(logs)
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    llm = LLMRuntime(settings, chat_model=model)
    app = create_app(settings, llm=llm, demo=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info",
                                           log_config=None))
    thread = threading.Thread(target=server.run, name="inspector-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the service did not start")
        time.sleep(0.1)
    try:
        yield Inspector(url, data_dir, model, release, logs, [])
    finally:
        release.set()
        server.should_exit = True
        thread.join(timeout=30)
        for logger in watched:
            logger.removeHandler(logs)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = browser_unavailable()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Debian's browser; Playwright never downloads one here.
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()
