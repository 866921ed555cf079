"""Synthetic logs whose right answers are known, and an app to train a tenant on."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from service.training.contract import InteractionLog
from service.training.data import Row, log_from_rows

DAY = 86_400.0
START = 1_700_000_000.0
CYCLE = ["a", "b", "c", "d", "e", "f"]
SPACE = ["s1", "s2", "s3", "s4", "s5", "s6"]
KITCHEN = ["k1", "k2", "k3", "k4", "k5", "k6"]
TEXTS = {
    **{i: f"Space voyage {n}. Tags: sci-fi, space, rockets, astronauts" for n, i in
       enumerate(SPACE)},
    **{i: f"Cooking show {n}. Tags: cooking, recipes, kitchen, baking" for n, i in
       enumerate(KITCHEN)},
    **{i: f"Episode {i}. Tags: cycle" for i in CYCLE},
    "unseen-space": "Mission to Jupiter. Tags: sci-fi, space, astronauts",
}


def cycle_rows(users: int = 30, length: int = 18, seed: int = 0) -> list[Row]:
    """Users who go round a -> b -> ... -> f -> a from a random start."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for u in range(users):
        start = rng.randrange(len(CYCLE))
        for step in range(length):
            item = CYCLE[(start + step) % len(CYCLE)]
            rows.append((f"c{u}", item, START + u * 100 + step * 3600, 1.0, f"c{u}-{step}"))
    return rows


def cluster_rows(users: int = 40, seed: int = 0) -> list[Row]:
    """Half the users like space items, half kitchen items, each in a random order; a
    few cross over once, so the clusters are not trivially disconnected."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for u in range(users):
        own = list(SPACE if u % 2 == 0 else KITCHEN)
        rng.shuffle(own)
        picks = own[:5]
        if u % 7 == 0:
            picks.insert(2, rng.choice(KITCHEN if u % 2 == 0 else SPACE))
        for step, item in enumerate(picks):
            rows.append((f"g{u}", item, START + u * 50 + step * DAY, 1.0, f"g{u}-{step}"))
    return rows


def make_log(rows: list[Row]) -> InteractionLog:
    return log_from_rows(rows)


@pytest.fixture
def train_settings(tmp_path: Path) -> Settings:
    """SQLite in a temp data folder: the layout the CLI's --data-dir reads."""
    return Settings(data_dir=tmp_path / "data", refresh_worker=False)


@pytest.fixture
def train_client(train_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(train_settings)) as client:
        yield client
