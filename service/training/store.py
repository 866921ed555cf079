"""Versioned model artifacts on disk, and the per-process registry that serves them.

Layout: `<data_dir>/models/tenant-<id>/<version>/` holds `meta.json`, the base models'
files and an optional `ranker/` folder; `tenant-<id>/current` names the version in use.
A new version is written in a temporary folder, renamed into place, and only then does
the pointer move (itself replaced atomically), so a failed or interrupted training
leaves the last good model serving. The newest `keep` versions stay on disk.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import secrets
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.core.config import Settings
from service.core.kept import Kept
from service.training.contract import (
    MODEL_SOURCES,
    CandidateSource,
    ModelMeta,
    SourceHit,
    UserEvent,
)
from service.training.data import Ints, indices_of
from service.training.models import BaseModels

log = logging.getLogger(__name__)

META_FILE = "meta.json"
POINTER = "current"
RANKER_DIR = "ranker"
# A staging folder untouched this long belongs to no running training.
STALE_STAGING_SECONDS = 6 * 3600
# A loaded artifact keeps users' personal candidates up to this many hits in all (~400
# bytes each, so ~80 MB at most per tenant; 400 a user at n = 100), 10 minutes each at most.
PERSONAL_HITS = 200_000
PERSONAL_SECONDS = 600.0


@dataclasses.dataclass
class _Personal:
    """A history's personal answers, its exclusions as catalog indices, and popular's
    last answer for them with the popularity counts it came from (a weak reference: a
    replay's older counts are not kept alive by it)."""

    hits: dict[CandidateSource, dict[str, SourceHit]]
    excluded: Ints
    popular: tuple[weakref.ref[object], dict[CandidateSource, dict[str, SourceHit]]] | None = (
        None)


def _hit_count(found: _Personal) -> int:
    """Its size in hits (~400 bytes each; an excluded index is 8)."""
    return max(1, sum(len(hits) for hits in found.hits.values()) + len(found.excluded) // 50)


class Ranker(Protocol):
    """What the store needs of a learned ranker: it can save itself and score rows."""

    def save(self, directory: Path) -> None: ...

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...


RankerLoader = Callable[[Path], Ranker]


def models_root(settings: Settings) -> Path:
    return settings.data_dir / "models"


def new_version() -> str:
    """Sortable by time, unique across processes: `20240501T120000123456Z-1a2b3c`."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def meta_to_json(meta: ModelMeta) -> str:
    return json.dumps(dataclasses.asdict(meta), indent=2, sort_keys=True)


def meta_from_json(text: str) -> ModelMeta:
    fields = {f.name for f in dataclasses.fields(ModelMeta)}
    return ModelMeta(**{k: v for k, v in json.loads(text).items() if k in fields})


@dataclasses.dataclass
class TrainedModels:
    """A loaded artifact: base models, the ranker if one was trained, and the metadata."""

    meta: ModelMeta
    base: BaseModels
    ranker: Ranker | None = None
    # The personal sources' answers (co-occurrence, transitions, sequence, content) are a
    # function of the history, n and the exclusions only: a user asking again before any
    # new event gets them from here (`PERSONAL_HITS`, least recently asked out, and
    # `PERSONAL_SECONDS`, so a deleted user's history does not stay). Kept with this
    # artifact, so a new version starts empty. Popular reads the clock and is always
    # asked, with the exclusions kept here as catalog indices. The hits are frozen;
    # callers never change the dicts.
    _personal: Kept[_Personal] = dataclasses.field(
        default_factory=lambda: Kept(PERSONAL_HITS, PERSONAL_SECONDS, _hit_count),
        repr=False, compare=False)

    def candidates(self, history: list[UserEvent], n: int, exclude: set[str],
                   now: float) -> dict[CandidateSource, dict[str, SourceHit]]:
        key = _personal_key(history, n, exclude)
        personal = self._personal.get(key)
        if personal is None:
            personal = _Personal(self.base.candidates(history, n, exclude, now, popular=False),
                                 indices_of(self.base.index, exclude))
            self._personal.put(key, personal)
        return self._with_popular(personal, n, now)

    def candidates_if_kept(self, history: list[UserEvent], n: int, exclude: set[str],
                           now: float) -> dict[CandidateSource, dict[str, SourceHit]] | None:
        personal = self._personal.get(_personal_key(history, n, exclude))
        return None if personal is None else self._with_popular(personal, n, now)

    def _with_popular(self, personal: _Personal, n: int, now: float
                      ) -> dict[CandidateSource, dict[str, SourceHit]]:
        """The personal answers and popular's. Popular reads the clock; its answer is
        the same while the counts it ranks by are the same object, and kept till then."""
        counts = self.base.popular_counts(now)
        kept = personal.popular
        if counts is not None and kept is not None and kept[0]() is counts:
            popular = kept[1]
        else:
            popular = self.base.popular_hits(n, personal.excluded, now)
            if counts is not None:
                personal.popular = (weakref.ref(counts), popular)
        found = dict(personal.hits)
        found.update(popular)
        return {s: found[s] for s in MODEL_SOURCES if s in found}

    def forget_personal(self) -> None:
        """Drop every kept personal answer (benchmarks time requests without them)."""
        self._personal.clear()

    def popularity(self, item_ids: list[str], now: float
                   ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        return self.base.popularity(item_ids, now)

    def cooccurrence_means(self, groups: Sequence[Sequence[str]], columns: Sequence[str]
                           ) -> npt.NDArray[np.float64]:
        return self.base.cooccurrence_means(groups, columns)

    def rank_scores(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
        if self.ranker is None:
            return None
        return np.asarray(self.ranker.score(features), dtype=np.float32)


def _personal_key(history: list[UserEvent], n: int, exclude: set[str]) -> Hashable:
    """What the personal sources' answers are a function of."""
    return (n, frozenset(exclude), tuple((e.item_id, e.ts, e.weight) for e in history))


def settle_heap() -> None:
    """Collect what a swap left behind (a replaced version), then move every object now
    alive out of the collector's sight (`gc.freeze`): a loaded artifact, the catalog and
    the libraries are a heap of a gigabyte whose full garbage collections took ~400 ms
    each, paid by whichever request allocated at that moment. Frozen objects are still
    freed when nothing refers to them; only cycles among them wait for the next
    `settle_heap` (the next version loaded), which unfreezes and collects first."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ArtifactStore:
    """Reads and writes one tenant's model versions under `root` (`models_root`)."""

    def __init__(self, root: Path, keep: int = 3) -> None:
        self.root = root
        self.keep = keep

    def tenant_dir(self, tenant_id: int) -> Path:
        return self.root / f"tenant-{tenant_id}"

    def pointer(self, tenant_id: int) -> Path:
        return self.tenant_dir(tenant_id) / POINTER

    def current_version(self, tenant_id: int) -> str | None:
        try:
            version = self.pointer(tenant_id).read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def versions(self, tenant_id: int) -> list[str]:
        """Complete versions on disk, oldest first."""
        folder = self.tenant_dir(tenant_id)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).exists())

    def current_meta(self, tenant_id: int) -> ModelMeta | None:
        """The current version's metadata (its meta.json only), or None without one."""
        version = self.current_version(tenant_id)
        if version is None:
            return None
        try:
            return meta_from_json((self.tenant_dir(tenant_id) / version / META_FILE).read_text())
        except (OSError, ValueError):
            return None

    def save(self, meta: ModelMeta, base: BaseModels, ranker: Ranker | None = None) -> Path:
        """Write a new version and make it current; on any failure nothing changes."""
        folder = self.tenant_dir(meta.tenant_id)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-*"):  # left by a training killed mid-write
            if time.time() - stale.stat().st_mtime > STALE_STAGING_SECONDS:
                shutil.rmtree(stale, ignore_errors=True)
        staging = folder / f".tmp-{meta.version}"
        final = folder / meta.version
        try:
            staging.mkdir()
            base.save(staging)
            if ranker is not None:
                (staging / RANKER_DIR).mkdir()
                ranker.save(staging / RANKER_DIR)
            # meta.json last: a folder without it is never a version
            (staging / META_FILE).write_text(meta_to_json(meta))
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._point(meta.tenant_id, meta.version)
        self._prune(meta.tenant_id)
        return final

    def _point(self, tenant_id: int, version: str) -> None:
        pointer = self.pointer(tenant_id)
        scratch = pointer.with_name(f".{POINTER}-{secrets.token_hex(4)}")
        with scratch.open("w") as out:
            out.write(version)
            out.flush()
            os.fsync(out.fileno())
        os.replace(scratch, pointer)

    def _prune(self, tenant_id: int) -> None:
        current = self.current_version(tenant_id)
        versions = self.versions(tenant_id)
        for old in versions[:max(0, len(versions) - self.keep)]:
            if old != current:
                shutil.rmtree(self.tenant_dir(tenant_id) / old, ignore_errors=True)

    def load(self, tenant_id: int, version: str | None = None,
             ranker_loader: RankerLoader | None = None) -> TrainedModels | None:
        """The given (or current) version, or None when the tenant has none.

        A saved ranker is loaded with `ranker_loader`; without one, the artifact serves
        without its ranker (the fixed blend), which the caller can tell from `ranker`.
        """
        version = version or self.current_version(tenant_id)
        if version is None:
            return None
        folder = self.tenant_dir(tenant_id) / version
        meta = meta_from_json((folder / META_FILE).read_text())
        ranker = None
        if (folder / RANKER_DIR).is_dir() and ranker_loader is not None:
            try:
                ranker = ranker_loader(folder / RANKER_DIR)
            except Exception as exc:  # e.g. a feature-list change: serve the fixed blend
                log.warning("tenant %s version %s: ranker not loaded (%s: %s); the fixed "
                            "blend ranks until the next training", tenant_id, version,
                            type(exc).__name__, exc)
                meta.notes = [*meta.notes, f"ranker not loaded: {type(exc).__name__}"]
        return TrainedModels(meta=meta, base=BaseModels.load(folder), ranker=ranker)


class ModelRegistry:
    """One per process: each tenant's current artifact, loaded once and swapped whole.

    `get` looks at the tenant's pointer file at most every `check_seconds`; when it
    changed, the new version is loaded (outside any request's data) and replaces the old
    reference in one assignment. A version that fails to load is logged and the one
    already loaded keeps serving.
    """

    def __init__(self, store: ArtifactStore, ranker_loader: RankerLoader | None = None,
                 check_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ranker_loader = ranker_loader
        self.check_seconds = check_seconds
        self.clock = clock
        self._loaded: dict[int, tuple[tuple[int, str] | None, TrainedModels | None]] = {}
        self._checked: dict[int, float] = {}
        self._lock = threading.Lock()  # guards `_locks`
        self._locks: dict[int, threading.Lock] = {}

    @classmethod
    def for_settings(cls, settings: Settings, ranker_loader: RankerLoader | None = None
                     ) -> ModelRegistry:
        return cls(ArtifactStore(models_root(settings)), ranker_loader)

    def get(self, tenant_id: int) -> TrainedModels | None:
        now = self.clock()
        last = self._checked.get(tenant_id)
        current = self._loaded.get(tenant_id, (None, None))[1]
        if last is not None and now - last < self.check_seconds:
            return current
        with self._lock:
            lock = self._locks.setdefault(tenant_id, threading.Lock())
        # One request loads a new version; the others keep serving the loaded one (a
        # load takes seconds at 100k items) and only a tenant's very first load waits.
        if not lock.acquire(blocking=current is None):
            return current
        try:
            self._checked[tenant_id] = now
            stamp = self._stamp(tenant_id)
            known, models = self._loaded.get(tenant_id, (None, None))
            if stamp == known and tenant_id in self._loaded:
                return models
            if stamp is None:
                self._loaded[tenant_id] = (None, None)
                return None
            try:
                fresh = self.store.load(tenant_id, stamp[1], self.ranker_loader)
            except Exception:  # a bad artifact must not take serving down
                log.exception("could not load models of tenant %s version %s", tenant_id,
                              stamp[1])
                # Not retried every few seconds: the next version (a new stamp) is.
                self._loaded[tenant_id] = (stamp, models)
                return models
            self._loaded[tenant_id] = (stamp, fresh)
            settle_heap()
            return fresh
        finally:
            lock.release()

    def _stamp(self, tenant_id: int) -> tuple[int, str] | None:
        pointer = self.store.pointer(tenant_id)
        try:
            mtime = pointer.stat().st_mtime_ns
            version = pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return (mtime, version) if version else None
