"""Fixtures for the evaluation harness: the bundled MovieLens copy, tiny hand-made sets."""

from __future__ import annotations

import pytest

from evals.datasets import load_movielens_latest
from evals.types import Dataset


@pytest.fixture(scope="session")
def ml_latest() -> Dataset:
    """The real ml-latest-small, loaded once: about two seconds."""
    return load_movielens_latest()
