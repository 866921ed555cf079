"""A real service on loopback (uvicorn in a thread of the test process, so its model can
be the scripted one) that loads a small demo in the background, and Debian's Chromium
driven by Playwright. Nothing downloads a browser: without /usr/bin/chromium (or
INTEREST_TEST_CHROMIUM) and Playwright the browser tests are skipped, saying why."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from service.main import create_app
from tests.utils.chat import ChattingSummarizer
from tests.utils.inspector import (
    CHROMIUM,
    TOPICS,
    Inspector,
    LogLines,
    browser_unavailable,
    cite_first_event,
)
from tests.utils.servers import free_port


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
