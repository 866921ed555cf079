"""Versioned artifacts: atomic saves, the last good version surviving a failure, pruning,
and the registry swapping to a new version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from service.training.contract import ModelMeta, UserEvent
from service.training.models import BaseModels, fit_base_models
from service.training.store import ArtifactStore, ModelRegistry, new_version
from tests.utils.training import START, TEXTS, cluster_rows, cycle_rows, make_log


class ScaledRanker:
    """A stand-in ranker: a weighted sum of the features, saved as JSON."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def save(self, directory: Path) -> None:
        (directory / "ranker.json").write_text(json.dumps({"scale": self.scale}))

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        scaled: npt.NDArray[np.float32] = (features.sum(axis=1) * self.scale).astype(np.float32)
        return scaled

    @classmethod
    def load(cls, directory: Path) -> ScaledRanker:
        return cls(json.loads((directory / "ranker.json").read_text())["scale"])


class BrokenRanker(ScaledRanker):
    def save(self, directory: Path) -> None:
        (directory / "half-written.bin").write_bytes(b"\0" * 10)
        raise OSError("disk full")


@pytest.fixture(scope="module")
def base() -> BaseModels:
    return fit_base_models(make_log(cycle_rows(users=10) + cluster_rows(users=10)), TEXTS,
                           sequence_seconds=2)


def meta(tenant_id: int = 7, **kw: object) -> ModelMeta:
    fields: dict[str, object] = {
        "version": new_version(), "tenant_id": tenant_id,
        "trained_at": "2024-01-01T00:00:00+00:00", "events_used": 100, "users": 20,
        "items": 19, "sources": ["popular"], "ranker": False}
    fields.update(kw)
    return ModelMeta(**fields)  # type: ignore[arg-type]


def test_a_failed_save_keeps_the_last_good_version(tmp_path: Path, base: BaseModels) -> None:
    store = ArtifactStore(tmp_path / "models")
    good = meta(ranker=True)
    store.save(good, base, ScaledRanker(2.0))
    with pytest.raises(OSError, match="disk full"):
        store.save(meta(ranker=True), base, BrokenRanker(1.0))
    assert store.current_version(7) == good.version
    assert store.versions(7) == [good.version]
    assert [p.name for p in store.tenant_dir(7).iterdir() if p.name.startswith(".")] == []
    loaded = store.load(7, ranker_loader=ScaledRanker.load)
    assert loaded is not None and loaded.meta == good
    scores = loaded.rank_scores(np.ones((2, 3), dtype=np.float32))
    assert scores is not None and scores.tolist() == [6.0, 6.0]


def test_only_the_newest_three_versions_stay(tmp_path: Path, base: BaseModels) -> None:
    store = ArtifactStore(tmp_path / "models")
    written = []
    for _ in range(5):
        m = meta()
        store.save(m, base)
        written.append(m.version)
    assert store.versions(7) == written[-3:]
    assert store.current_version(7) == written[-1]
    assert store.load(8) is None  # another tenant has nothing


def test_without_a_ranker_rank_scores_is_none_and_candidates_match_the_base(
        tmp_path: Path, base: BaseModels) -> None:
    store = ArtifactStore(tmp_path / "models")
    store.save(meta(), base)
    loaded = store.load(7)
    assert loaded is not None
    assert loaded.rank_scores(np.ones((1, 3), dtype=np.float32)) is None
    history = [UserEvent("a", START, 1.0, "e1"), UserEvent("s1", START + 1, 1.0, "e2")]
    assert loaded.candidates(history, 5, set(), START) == base.candidates(history, 5, set(),
                                                                          START)


def test_registry_loads_once_and_swaps_when_the_pointer_moves(
        tmp_path: Path, base: BaseModels) -> None:
    store = ArtifactStore(tmp_path / "models")
    clock = [0.0]
    registry = ModelRegistry(store, ScaledRanker.load, check_seconds=5.0,
                             clock=lambda: clock[0])
    assert registry.get(7) is None
    first = meta()
    store.save(first, base)
    assert registry.get(7) is None  # checked less than 5 s ago
    clock[0] = 6.0
    loaded = registry.get(7)
    assert loaded is not None and loaded.meta.version == first.version
    clock[0] = 12.0
    assert registry.get(7) is loaded  # same pointer: the same object, not reloaded

    second = meta(ranker=True)
    store.save(second, base, ScaledRanker(1.0))
    clock[0] = 18.0
    swapped = registry.get(7)
    assert swapped is not None and swapped.meta.version == second.version
    assert swapped.ranker is not None

    # A version that cannot be read leaves the loaded one serving.
    broken = store.tenant_dir(7) / "99999999T000000000000Z-ffffff"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    store.pointer(7).write_text(broken.name)
    clock[0] = 24.0
    assert registry.get(7) is swapped


def test_a_ranker_that_cannot_load_leaves_the_models_serving_with_the_blend(
        tmp_path: Path, base: BaseModels) -> None:
    store = ArtifactStore(tmp_path / "models")
    saved = meta(ranker=True)
    store.save(saved, base, ScaledRanker(2.0))

    def refuse(directory: Path) -> ScaledRanker:
        raise ValueError("feature version f0 != f1")

    loaded = ModelRegistry(store, ranker_loader=refuse).get(7)
    assert loaded is not None and loaded.ranker is None
    assert loaded.rank_scores(np.ones((1, 3), dtype=np.float32)) is None
    assert loaded.meta.notes == ["ranker not loaded: ValueError"]
    assert loaded.candidates([], 3, set(), START)  # the base models still answer


def test_a_loaded_version_leaves_the_heap_frozen_and_the_next_one_collects_the_last(
        tmp_path: Path, base: BaseModels) -> None:
    """After a load everything alive is out of the collector's sight (full collections
    no longer walk the models); what the next swap leaves behind in reference cycles is
    collected then, not kept forever."""
    import gc
    import weakref

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    store = ArtifactStore(tmp_path / "models")
    clock = [0.0]
    registry = ModelRegistry(store, ScaledRanker.load, check_seconds=1.0,
                             clock=lambda: clock[0])
    try:
        leftover = Cycle()  # alive at the load: frozen with the rest
        gone = weakref.ref(leftover)
        store.save(meta(), base)
        loaded = registry.get(7)
        assert loaded is not None and gc.get_freeze_count() > 0
        assert all(loaded is not o for o in gc.get_objects())  # out of sight
        # Unreachable now, but a full collection does not look at frozen objects ...
        del leftover
        gc.collect()
        assert gone() is not None
        # ... until the next version's load unfreezes and collects first.
        store.save(meta(ranker=True), base, ScaledRanker(1.0))
        clock[0] = 2.0
        assert registry.get(7) is not loaded
        assert gone() is None
    finally:
        gc.unfreeze()
