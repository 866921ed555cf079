"""Train a tenant's models: read its events, measure on held-out events, fit, save.

`train_log` is the whole job on an `InteractionLog` (the benchmark and the eval call it
directly); `train_tenant` reads the tenant's log from the database, calls it and saves
the artifact through the store.

The job fits the base models twice: once without the held-out events (for the held-out
metrics and the ranker's samples) and once on the whole log (what is saved). Neither fit
reads the other, and the sequence model, most of a fit's time, trains on one thread; so
when it trains for a fixed number of epochs (`sequence_epochs`, as the evaluation and the
tests train) and `workers` > 1, a spawned process fits the final models while this one
fits the held-out ones. Under a time budget (the service's default) the two fits stay
one after the other: side by side on two cores, each would train fewer epochs in its
budget for little less wall time (the README's benchmark figures, session 34). There the
final sequence model continues from the held-out one's weights for a third of the budget
(`WARM_SHARE`) rather than starting afresh: less time, and a model trained longer.
"""

from __future__ import annotations

import hashlib
import logging
import math
import pickle
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from service.core.config import Settings
from service.core.errors import Conflict
from service.ingest.models import Event
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

logger = logging.getLogger(__name__)

HELDOUT_USERS = 500
# Under a time budget the final sequence model continues from the held-out fit's weights
# (the same catalog index) for this share of the budget: the held-out fit has learnt most
# of what the whole log teaches. Measured on ml-latest-small (README, session 35): the
# continued model, 15 s after the held-out 45 s, scored above one fitted afresh for 45 s.
WARM_SHARE = 1 / 3
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
              ranker_trainer: RankerTrainer | None = None, workers: int = 1) -> Training:
    """Held-out metrics from models fit without the held-out events, the ranker if a
    trainer is given, then the base models fit on the whole log (with `workers` > 1 and
    `sequence_epochs`, in a process of its own from the start: `FinalFit`)."""
    started = time.monotonic()
    fit_args: dict[str, Any] = {"item_texts": item_texts, "seed": seed,
                                "sequence_seconds": sequence_seconds,
                                "sequence_epochs": sequence_epochs}

    def fit_models(part: InteractionLog, **overrides: Any) -> BaseModels:
        return fit_base_models(part, **{**fit_args, **overrides}, progress=progress)

    final = FinalFit(log, fit_args) if workers > 1 and sequence_epochs else None
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
        # The held-out fit's sequence model, for the final one to continue from.
        start = next((m.sequence for m in fitted.values()), None)
        fitted.clear()
        models = final.result() if final is not None else None
        if models is None:
            warm = sequence_epochs is None and start is not None
            models = fit_models(log, **({"sequence_seconds": sequence_seconds * WARM_SHARE,
                                         "sequence_start": start} if warm else {}))
        del start
        bar.update()
    finally:
        bar.close()
        if final is not None:
            final.close()
    return Training(models, ranker, heldout, [*models.notes, *notes],
                    time.monotonic() - started)


FINISH_SECONDS = 30.0  # for the fitting process to exit once it has sent its models


class FinalFit:
    """`fit_base_models(log, **fit_args)` in a spawned process (a fresh interpreter:
    forking the service, whose other threads may hold locks, is not safe), started at
    once. The models come back pickled through a pipe (plain bytes, not torch's
    shared-memory tensors). `result()` is None, with a warning, when the process could
    not do it; the caller then fits in place. `close()` stops a fit still running."""

    def __init__(self, log: InteractionLog, fit_args: Mapping[str, object]) -> None:
        import multiprocessing

        self._process: Any = None
        self._receive: Any = None
        try:
            context = multiprocessing.get_context("spawn")
            self._receive, send = context.Pipe(duplex=False)
            try:
                process = context.Process(target=_fit_into, args=(send, log, dict(fit_args)),
                                          name="fit-final-models", daemon=True)
                process.start()
            finally:
                # The child holds the only writing end (its death is an EOF); without a
                # child, nobody does. `_failed` closes the reading end.
                send.close()
            self._process = process  # kept once started: `close()` joins only what ran
        except Exception as exc:  # no process to be had: the caller fits in place
            self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, why: str) -> None:
        logger.warning("fitting the final models in this process: the fitting process "
                       "failed (%s)", why)
        self.close()

    def result(self) -> BaseModels | None:
        if self._process is None:
            return None
        try:
            status, value = pickle.loads(self._receive.recv_bytes())
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            self._failed(f"no result: {type(exc).__name__} {exc}".strip())
            return None
        if status != "ok" or not isinstance(value, BaseModels):
            self._failed(str(value))
            return None
        self.close(finishing=True)
        return value

    def close(self, finishing: bool = False) -> None:
        """Stop the process; `finishing`: it has sent its result and is exiting, so it
        gets a moment to run its exit handlers first (killed, it would leave semaphores
        of its own, tqdm's lock among them, to the resource tracker)."""
        if self._process is not None:
            if finishing:
                self._process.join(timeout=FINISH_SECONDS)
            if self._process.is_alive():
                self._process.terminate()
            self._process.join()
            self._process = None
        if self._receive is not None:
            self._receive.close()
            self._receive = None


def _fit_into(send: Any, log: InteractionLog, fit_args: dict[str, Any]) -> None:
    """In the fitting process: the final models, or what went wrong, pickled."""
    try:
        payload = pickle.dumps(("ok", fit_base_models(log, **fit_args)),
                               protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fits itself
        payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
    send.send_bytes(payload)
    send.close()


def train_tenant(session: Session, tenant_id: int, settings: Settings, *,
                 item_vectors_source: object | None = None, progress: bool = True,
                 ranker_trainer: RankerTrainer | None = None,
                 sequence_seconds: float = 45.0,
                 sequence_epochs: int | None = None, workers: int = 1) -> ModelMeta:
    """Train and save a new model version for the tenant; returns its metadata.

    Raises `Conflict("no_activity")` (409) when the tenant has no item events. The last
    good version keeps serving until the new one is completely on disk.
    `item_vectors_source` is accepted for the ranker's facet features and not read by
    the base models; a ranker trainer that needs item vectors closes over them.
    `workers` > 1 with `sequence_epochs` fits the final models in a process of their own
    (`FinalFit`).
    """
    del item_vectors_source
    started = time.monotonic()
    # Read first: an event stored between the two is trained on and still counts as new
    # (at worst one training more), never the other way round.
    last_event_id = session.scalar(select(func.max(Event.id)).where(
        Event.tenant_id == tenant_id))
    log = log_from_database(session, tenant_id, settings.rating_max)
    if len(log) == 0:
        raise Conflict("no_activity",
                       "This tenant has no events about items yet: send some events "
                       "(views, ratings, likes ...) before training.")
    item_texts = item_texts_from_database(session, tenant_id)
    session.commit()  # no transaction (nor pooled connection) held for minutes of training
    trained = train_log(log, item_texts, sequence_seconds=sequence_seconds,
                        sequence_epochs=sequence_epochs, progress=progress,
                        ranker_trainer=ranker_trainer, workers=workers)
    return save_training(settings, tenant_id, log, trained, time.monotonic() - started,
                         last_event_id=last_event_id)


def save_training(settings: Settings, tenant_id: int, log: InteractionLog, trained: Training,
                  seconds: float, *, last_event_id: int | None = None) -> ModelMeta:
    """Save what `train_log` produced as the tenant's new current version
    (`last_event_id`: `ModelMeta.last_event_id`, when the log came from the database)."""
    meta = ModelMeta(
        version=new_version(), tenant_id=tenant_id,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        events_used=len(log), users=len(log.user_ids), items=len(trained.models.item_ids),
        sources=list(trained.models.sources), ranker=trained.ranker is not None,
        heldout=trained.heldout, notes=trained.notes, seconds=round(seconds, 3),
        last_event_id=last_event_id)
    ArtifactStore(models_root(settings)).save(meta, trained.models, trained.ranker)
    return meta
