"""Train a tenant's models: read its events, measure on held-out events, fit, save.

`train_log` is the whole job on an `InteractionLog` (the benchmark and the eval call it
directly); `train_tenant` reads the tenant's log from the database, calls it and saves
the artifact through the store.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import numpy as np
from sqlalchemy.orm import Session
from tqdm import tqdm

from service.core.config import Settings
from service.core.errors import Conflict
from service.training.contract import InteractionLog, ModelMeta
from service.training.data import (
    SPLIT_HOLDOUTS,
    history_of,
    item_texts_from_database,
    log_from_database,
    split_last_positives,
    subset,
)
from service.training.models import BaseModels, fit_base_models
from service.training.store import ArtifactStore, Ranker, models_root, new_version

HELDOUT_USERS = 500
HELDOUT_K = 10

FitFn = Callable[[InteractionLog], BaseModels]
# (log, fit_fn, item_texts) -> (ranker or None, metrics, notes)
RankerTrainer = Callable[[InteractionLog, FitFn, Mapping[str, str]],
                         tuple[Ranker | None, dict[str, float], list[str]]]


@dataclass
class Training:
    """What `train_log` produced; `heldout` is what goes into `ModelMeta.heldout`."""

    models: BaseModels
    ranker: Ranker | None
    heldout: dict[str, float]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class HeldOut:
    """Leave-last-positive-out: per sampled user, the log positions of their history and
    of the held-out event; `train` is the log without the held-out events and anything
    those users did after them."""

    train: InteractionLog
    histories: list[list[int]]
    targets: list[int]


def heldout_split(log: InteractionLog, users: int = HELDOUT_USERS, seed: int = 0) -> HeldOut:
    """The training's time split (`split_last_positives`, the ranker's too, so both share
    one fit), measured on the last held-out event of up to `users` of its held-out users
    (seeded sample) whose held-out item is new to them and who have a history before it."""
    keep, tails = split_last_positives(log, seed, SPLIT_HOLDOUTS)
    held = {u: targets[-1] for u, targets in tails.items()}
    histories: list[list[int]] = []
    targets: list[int] = []
    rng = np.random.default_rng(seed)
    candidates = sorted(held)
    for n in rng.permutation(len(candidates)).tolist():
        if len(targets) >= users:
            break
        history, target = held[candidates[n]]
        if not history or log.items[target] in set(log.items[history].tolist()):
            continue
        histories.append(history)
        targets.append(target)
    return HeldOut(subset(log, keep), histories, targets)


def _fingerprint(log: InteractionLog) -> str:
    digest = hashlib.sha256()
    for array in (log.users, log.items, log.ts, log.weight):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def heldout_metrics(models: BaseModels, log: InteractionLog, split: HeldOut,
                    k: int = HELDOUT_K) -> dict[str, float]:
    """HR@k and NDCG@k of each source, consumed items excluded, asked as of the target's
    time; `users` says how many users were measured."""
    hits: dict[str, list[float]] = {}
    for history_positions, target in zip(split.histories, split.targets, strict=True):
        history = history_of(log, history_positions)
        exclude = {e.item_id for e in history}
        wanted = models.index.get(log.item_ids[int(log.items[target])], -1)
        for source, ranked in models.ranked(history, k, exclude, float(log.ts[target])).items():
            found = np.flatnonzero(ranked.items == wanted)
            hits.setdefault(source, []).append(
                1.0 / math.log2(int(found[0]) + 2) if len(found) else 0.0)
    out: dict[str, float] = {"users": float(len(split.targets))}
    for name, gains in sorted(hits.items()):
        values = np.asarray(gains)
        out[f"{name}.hr@{k}"] = round(float((values > 0).mean()), 4)
        out[f"{name}.ndcg@{k}"] = round(float(values.mean()), 4)
    return out


def train_log(log: InteractionLog, item_texts: Mapping[str, str], *, seed: int = 0,
              sequence_seconds: float = 45.0, sequence_epochs: int | None = None,
              heldout_users: int = HELDOUT_USERS, progress: bool = False,
              ranker_trainer: RankerTrainer | None = None) -> Training:
    """Held-out metrics from models fit without the held-out events, the ranker if a
    trainer is given, then the base models fit on the whole log."""
    started = time.monotonic()
    fit_models: FitFn = partial(fit_base_models, item_texts=item_texts, seed=seed,
                                sequence_seconds=sequence_seconds,
                                sequence_epochs=sequence_epochs, progress=progress)
    fitted: dict[str, BaseModels] = {}

    def fit(part: InteractionLog) -> BaseModels:
        """The held-out metrics and the ranker split the log alike (same seed): the
        models fitted for one serve the other instead of being fitted twice."""
        key = _fingerprint(part)
        if key not in fitted:
            fitted.clear()
            fitted[key] = fit_models(part)
        return fitted[key]

    steps = ["held-out models", "held-out metrics", "ranker", "final models"]
    bar = tqdm(total=len(steps), desc="training", unit="step", disable=not progress,
               file=sys.stderr)
    notes: list[str] = []
    try:
        bar.set_postfix_str(steps[0])
        split = heldout_split(log, heldout_users, seed)
        heldout: dict[str, float] = {}
        if split.targets:
            check = fit(split.train)
            bar.update()
            bar.set_postfix_str(steps[1])
            heldout = heldout_metrics(check, log, split)
        else:
            notes.append("no held-out metrics: no user has a liked item after other events")
            bar.update()
        bar.update()
        ranker: Ranker | None = None
        if ranker_trainer is not None:
            bar.set_postfix_str(steps[2])
            ranker, ranker_metrics, ranker_notes = ranker_trainer(log, fit, item_texts)
            heldout.update(ranker_metrics)
            notes.extend(ranker_notes)
        bar.update()
        bar.set_postfix_str(steps[3])
        fitted.clear()
        models = fit_models(log)
        bar.update()
    finally:
        bar.close()
    return Training(models, ranker, heldout, [*models.notes, *notes],
                    time.monotonic() - started)


def train_tenant(session: Session, tenant_id: int, settings: Settings, *,
                 item_vectors_source: object | None = None, progress: bool = True,
                 ranker_trainer: RankerTrainer | None = None,
                 sequence_seconds: float = 45.0,
                 sequence_epochs: int | None = None) -> ModelMeta:
    """Train and save a new model version for the tenant; returns its metadata.

    Raises `Conflict("no_activity")` (409) when the tenant has no item events. The last
    good version keeps serving until the new one is completely on disk.
    `item_vectors_source` is accepted for the ranker's facet features and not read by
    the base models; a ranker trainer that needs item vectors closes over them.
    """
    del item_vectors_source
    started = time.monotonic()
    log = log_from_database(session, tenant_id, settings.rating_max)
    if len(log) == 0:
        raise Conflict("no_activity",
                       "This tenant has no events about items yet: send some events "
                       "(views, ratings, likes ...) before training.")
    item_texts = item_texts_from_database(session, tenant_id)
    session.commit()  # no transaction (nor pooled connection) held for minutes of training
    trained = train_log(log, item_texts, sequence_seconds=sequence_seconds,
                        sequence_epochs=sequence_epochs, progress=progress,
                        ranker_trainer=ranker_trainer)
    return save_training(settings, tenant_id, log, trained, time.monotonic() - started)


def save_training(settings: Settings, tenant_id: int, log: InteractionLog, trained: Training,
                  seconds: float) -> ModelMeta:
    """Save what `train_log` produced as the tenant's new current version."""
    meta = ModelMeta(
        version=new_version(), tenant_id=tenant_id,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        events_used=len(log), users=len(log.user_ids), items=len(trained.models.item_ids),
        sources=list(trained.models.sources), ranker=trained.ranker is not None,
        heldout=trained.heldout, notes=trained.notes, seconds=round(seconds, 3))
    ArtifactStore(models_root(settings)).save(meta, trained.models, trained.ranker)
    return meta
