"""`train --ray` trains the tenant as one Ray task and prints what `train` prints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.cli import main
from service.core.config import Settings
from service.main import create_app
from service.training.store import ArtifactStore, models_root
from tests.utils.training import fill_tenant

pytestmark = pytest.mark.slow


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("INTEREST_TRAIN_SEQUENCE_SECONDS", "5")
    with TestClient(create_app(Settings(data_dir=tmp_path / "data",
                                        refresh_worker=False))) as test_client:
        yield test_client


def test_train_on_ray_saves_the_same_model_as_train(
        client: TestClient, tmp_path: Path, local_ray: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    fill_tenant(client)
    data_dir = str(tmp_path / "data")
    assert main(["train", "--tenant", "acme", "--data-dir", data_dir]) == 0
    here = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert main(["train", "--tenant", "acme", "--ray", "--data-dir", data_dir]) == 0
    there = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    same = ("tenant_id", "events_used", "users", "items", "sources", "ranker")
    assert {k: there[k] for k in same} == {k: here[k] for k in same}
    assert there["events_used"] == 60 and there["version"] != here["version"]
    store = ArtifactStore(models_root(Settings(data_dir=tmp_path / "data")))
    assert store.current_version(here["tenant_id"]) == there["version"]

    assert main(["train", "--tenant", "nobody", "--ray", "--data-dir", data_dir]) == 2
    assert "no tenant named 'nobody'" in capsys.readouterr().err
