"""The inspector's browser test: Debian's Chromium if installed, the service's log lines,
and the running service the browser visits."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.utils.chat import ChattingSummarizer

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
