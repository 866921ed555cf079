"""The demo load in a thread of the running service, with its progress for /readyz and
the inspector."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from service.core.config import Settings
from service.demo.load import load_demo, print_line
from service.demo.sessions import demo_user_id
from service.demo.state import DEMO_TENANT, KEY_FILE, DemoCancelled, DemoLoad
from service.profiles.runtime import ProfileRuntime
from service.tenants.service import ensure_tenant_key

# The default demo users (Settings.demo_users), picked for clearly different tastes and
# modest histories; what they like, for the start-up message.
TASTES = {
    "401": "animated family adventures",
    "454": "classic horror and mystery thrillers",
    "309": "golden-age dramas, war films and westerns",
}


@dataclass
class DemoStatus:
    """A snapshot of a background load, for /readyz and the inspector."""

    state: str  # "loading", "loaded" or "failed"
    stage: str  # "starting", one of STAGES, or "done"
    done: int
    total: int
    seconds: float
    error: str | None = None


class BackgroundDemo:
    """Loads the demo in a thread of the running service, so it answers at once.

    Progress is kept for /readyz and the inspector; a failure is kept (and printed),
    never raised: the service serves anyway and the next start retries. `stop` asks
    the load to end at its next batch (the marker stays unwritten, the next start
    resumes). `then` runs after the load, whatever its outcome (the app starts its
    refresh worker there, so the worker never races the load for the demo users).
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], rt: ProfileRuntime,
                 then: Callable[[], None] | None = None,
                 say: Callable[[str], None] = print_line, progress: bool = True) -> None:
        self._settings = settings
        self._sessions = sessions
        self._rt = rt
        self._then = then
        self._say = say
        self._progress = progress
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.perf_counter()
        self._status = DemoStatus(state="loading", stage="starting", done=0, total=0, seconds=0)
        self.result: DemoLoad | None = None

    def status(self) -> DemoStatus:
        with self._lock:
            status = DemoStatus(**vars(self._status))
        if status.state == "loading":
            status.seconds = round(time.perf_counter() - self._started, 1)
        return status

    def _update(self, stage: str, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise DemoCancelled
        with self._lock:
            self._status.stage, self._status.done, self._status.total = stage, done, total

    def _finish(self, state: str, error: str | None = None) -> None:
        with self._lock:
            self._status.state, self._status.error = state, error
            if state == "loaded":
                self._status.stage = "done"
            self._status.seconds = round(time.perf_counter() - self._started, 1)

    def start(self) -> None:
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="demo-load", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        try:
            with self._sessions() as session:
                _, key = ensure_tenant_key(session, DEMO_TENANT, self._settings.data_dir / KEY_FILE)
            self._say(f"demo API key (tenant '{DEMO_TENANT}'): {key}")
            self._say(f"  also in {self._settings.data_dir / KEY_FILE}")
            users = ", ".join(f"{demo_user_id(u)} ({TASTES[u]})" if u in TASTES
                              else demo_user_id(u) for u in self._settings.demo_users)
            self._say(f"  demo users: {users}")
            self.result = load_demo(self._settings, self._sessions, self._rt, say=self._say,
                                    progress=self._progress, on_progress=self._update)
        except DemoCancelled:
            self._finish("failed", "stopped with the service; the next start resumes")
        except Exception as exc:  # whatever went wrong: serve anyway, retry at the next start
            problem = f"{type(exc).__name__}: {exc}"
            print(f"demo: not loaded ({problem}); the next start retries", file=sys.stderr,
                  flush=True)
            self._finish("failed", problem)
        else:
            # Users whose refresh failed get popular items until the next start retries.
            failures = self.result.failures
            self._finish("loaded", "refresh failed for " + "; ".join(failures)
                         if failures else None)
        finally:
            if self._then is not None and not self._cancel.is_set():
                self._then()
