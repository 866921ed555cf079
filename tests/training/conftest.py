"""An app to train a tenant on (the synthetic logs are in tests/utils/training.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from service.vectors.embeddings import Embedder


@pytest.fixture
def train_settings(tmp_path: Path) -> Settings:
    """SQLite in a temp data folder: the layout the CLI's --data-dir reads."""
    return Settings(data_dir=tmp_path / "data", refresh_worker=False)


@pytest.fixture
def train_client(train_settings: Settings, embedder: Embedder) -> Iterator[TestClient]:
    with TestClient(create_app(train_settings, embedder=embedder)) as client:
        yield client
