"""Where a demo load is and whether one is needed: the marker file written after a
complete load, the check of it against the database, what a load reports."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.errors import ApiError
from service.demo.sessions import demo_user_id
from service.profiles.models import Profile
from service.profiles.runtime import ProfileRuntime
from service.users.models import User
from service.users.service import delete_user

DEMO_TENANT = "demo"
KEY_FILE = "demo-api-key"
MARKER_FILE = "demo-loaded.json"
# The demo users are reloaded at today's dates when the load is older than this.
RENEW_AFTER = timedelta(days=7)


class DemoError(RuntimeError):
    """The demo cannot be loaded at all (a user id not in the data set, a failed index)."""


class DemoCancelled(Exception):
    """The service is shutting down while the demo loads; the next start resumes it."""


# Where a load is: (stage, done, total). Stages, in order: catalog (movies indexed),
# ratings (demo users' first sessions stored), raters (other raters' ratings stored),
# profiles (demo users replayed session by session and refreshed), training (0 of 1, then
# 1 of 1). A hook may raise DemoCancelled to stop.
ProgressHook = Callable[[str, int, int], None]
STAGES = ("catalog", "ratings", "raters", "profiles", "training")


def no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class DemoLoad:
    key: str
    key_file: Path
    user_ids: list[str]
    loaded: bool  # False: the marker said it was all there already
    items: int = 0
    events: int = 0
    refreshed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    models_version: str | None = None
    training_problem: str | None = None

    @property
    def complete(self) -> bool:
        return not self.failures


def _marker_path(settings: Settings) -> Path:
    return settings.data_dir / MARKER_FILE


def _wanted(settings: Settings, tenant_id: int) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "users": list(settings.demo_users),
            "catalog_limit": settings.demo_catalog_limit}


def demo_state(settings: Settings, session: Session, tenant_id: int, now: datetime) -> str:
    """'ready', 'load' (never loaded, changed, or the database lost it) or 'renew'.

    The marker must name this database's demo tenant and the demo asked for now, and the
    database must still hold every demo user with a refreshed profile (a new database or
    a wiped one next to an old marker is loaded again). A demo loaded more than
    RENEW_AFTER ago is 'renew': its facets are short-term and would decay below the
    archive floor within weeks, leaving only popular lists.
    """
    try:
        marker = json.loads(_marker_path(settings).read_text())
    except (OSError, ValueError):
        return "load"
    wanted = _wanted(settings, tenant_id)
    if not isinstance(marker, dict) or any(marker.get(k) != v for k, v in wanted.items()):
        return "load"
    ids = [demo_user_id(u) for u in settings.demo_users]
    profiled = session.scalar(
        select(func.count()).select_from(User).join(Profile, Profile.user_pk == User.id)
        .where(User.tenant_id == tenant_id, User.user_id.in_(ids), Profile.version > 0))
    if (profiled or 0) < len(ids):
        return "load"
    try:
        loaded_at = datetime.fromisoformat(str(marker.get("loaded_at")))
    except ValueError:
        return "renew"
    return "renew" if now - loaded_at > RENEW_AFTER else "ready"


def forget_users(session: Session, tenant_id: int, user_ids: Sequence[str],
                  rt: ProfileRuntime) -> None:
    for user_id in user_ids:
        try:
            delete_user(session, tenant_id, user_id, rt.vectors)
        except ApiError as exc:
            if exc.status != 404:
                raise


def write_marker(settings: Settings, tenant_id: int, result: DemoLoad, at: datetime) -> None:
    path = _marker_path(settings)
    body = {**_wanted(settings, tenant_id), "items": result.items, "loaded_at": at.isoformat()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(tmp, path)  # never half a marker
