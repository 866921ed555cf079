"""`refresh --all --ray` and `train --ray` on a local Ray instance on loopback: every user
refreshed once per batch, at most --concurrency at once, and a re-run resumes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.batch import service as batch
from service.cli import main as cli_main
from service.core.config import Settings
from service.core.db import utcnow
from service.profiles.models import ProfileVersion
from service.users.models import User
from service.vectors.embeddings import Embedder
from tests.utils.profiles import ProfileApp, make_profile_app

pytestmark = pytest.mark.slow

USERS = {"u1": ["alien"], "u2": ["bread"], "u3": ["dune"], "u4": ["pasta"],
         "u5": ["solaris"], "u6": ["curry"]}


@pytest.fixture
def app(tmp_path: Path, chroma_server: str, monkeypatch: pytest.MonkeyPatch,
        local_ray: None, embedder: Embedder) -> Iterator[ProfileApp]:
    """A tenant on SQLite and the Chroma server; the CLI (and so every Ray task, which
    gets the CLI's Settings) uses the fake LLM."""
    prefix = f"r{uuid.uuid4().hex[:8]}"
    env = {"INTEREST_LLM_BACKEND": "fake", "INTEREST_CHROMA_URL": chroma_server,
           "INTEREST_CHROMA_COLLECTION_PREFIX": prefix, "INTEREST_REFRESH_WORKER": "false"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(data_dir=tmp_path / "data")
    for profile_app in make_profile_app(settings, embedder):
        for user, items in USERS.items():
            profile_app.watch(user, items, f"e-{user}")
        yield profile_app


def versions(app: ProfileApp) -> dict[str, list[str]]:
    sessions = app.t.client.app.state.container.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        rows = session.execute(select(User.user_id, ProfileVersion.trigger)
                               .join(ProfileVersion, ProfileVersion.user_pk == User.id)
                               .order_by(ProfileVersion.version))
        found: dict[str, list[str]] = {}
        for user_id, trigger in rows:
            found.setdefault(user_id, []).append(trigger)
        return found


def refresh(app: ProfileApp, *flags: str) -> int:
    return cli_main(["refresh", "--all", "--tenant", "acme", "--ray",
                     "--data-dir", str(app.settings.data_dir), *flags])


def test_refresh_all_on_ray_is_bounded_and_resumes(
        app: ProfileApp, capsys: pytest.CaptureFixture[str]) -> None:
    # One in flight although Ray has two CPUs: the bound is ours, not Ray's.
    assert refresh(app, "--concurrency", "1", "--users-per-task", "1") == 0
    out = capsys.readouterr()
    assert "6 of 6 users due" in out.out and "at most 1 at once" in out.out
    assert "refreshed 6 of 6 due profiles" in out.out
    assert "at most 1 refreshes overlapped" in out.out
    assert "6/6" in out.err  # the progress bar
    assert versions(app) == {user: ["batch"] for user in USERS}

    # The finished batch again: nothing is due, nothing runs.
    assert refresh(app, "--resume") == 0
    out = capsys.readouterr()
    assert "(resumed): 0 of 6 users due, 6 already refreshed" in out.out
    assert versions(app) == {user: ["batch"] for user in USERS}

    # A new batch that stopped after two users (as if interrupted) ...
    path = batch.batch_path(app.settings, 1)
    started, resumed = batch.open_batch(path, 1, utcnow(), restart=True)
    assert not resumed
    with app.t.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        pks = list(session.scalars(select(User.id).order_by(User.id)))
        assert session.scalar(select(func.count(User.id))) == len(USERS)
    fields = batch.portable_settings(Settings(data_dir=app.settings.data_dir))
    assert [r.error for r in batch.refresh_users(fields, pks[:2])] == [None, None]
    # ... is resumed by the next plain run: only the other four, two at a time at most.
    assert refresh(app, "--concurrency", "2", "--users-per-task", "2") == 0
    out = capsys.readouterr()
    assert "(resumed): 4 of 6 users due, 2 already refreshed" in out.out
    assert "refreshed 4 of 4 due profiles" in out.out
    peak = int(out.out.split("at most ")[-1].split()[0])
    assert 1 <= peak <= 2
    assert versions(app) == {user: ["batch", "batch"] for user in USERS}
    assert json.loads(path.read_text())["finished_at"] is not None


def test_refresh_on_ray_refuses_the_embedded_chroma_folder(
        app: ProfileApp, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("INTEREST_CHROMA_URL")
    assert refresh(app) == 2
    assert "needs a Chroma server" in capsys.readouterr().err
    assert versions(app) == {}
