"""The learned ranker: LightGBM LambdaRank over `features.py`'s rows, trained per tenant.

Training replays the tenant's own history with a time split (`data.split_last_positives`,
shared with the held-out metrics so one fit serves both): for up to 2,000 sampled users
with five positive events or more, their last positive events (`SPLIT_HOLDOUTS`, three,
as many as leave four to learn from) are held out together with everything the user did
from the first of them on; the base models are fitted (`fit_fn`) on the log without those
tails. Each held-out event is one query: its candidates are generated from everything
the user did before it (the union of every source, `CANDIDATES_PER_SOURCE` each), the
held-out item is labelled 1 and the rest 0, and LambdaRank learns to order them. Three
queries per user rather than one give the ranker three times the examples to learn from
without any user's held-out event being seen by the base models.

The profile's facets are not known at training time, so pseudo-facets stand in
(`pseudo_facets.py`). Given the catalog (`grouping`), they are what a first profile
refresh would hold for the user's history: the same grouping code
(`summaries/grouping.py`, the same tag weights) over their newest `GROUPED_EVENTS`
events, then the profile's own merge rules (a group below the archive floor is no
facet; a facet keeps its newest evidence), each kept like-facet's strength a share of
the like total and its centroid the unit mean of its evidence items' vectors, as
serving computes it; so the ranker learns from the facets it will be shown. Without the
catalog, the user's positive items grouped by k-means on their vectors stand in (at most
`MAX_PSEUDO_FACETS` groups, decayed shares). Low-rated items form one avoid signal
either way. Given `item_vectors`, pseudo-facets also gather the "facet" source's
candidates as serving gathers them from Chroma (each facet's quota of `FACET_POOL`
nearest its centroid); without vectors the facet features are 0.

Building the samples is most of training's time: with `workers` > 1 (the service's
`train_workers`, 2 by default) spawned processes build them for chunks of users side by
side, each with one thread and a copy of the models, vectors and grouping inputs; the
samples are the same ones in the same order.

A share of users (`VALIDATION_SHARE`, with all their queries) is kept out of training;
NDCG@10 and HR@10 of the ranker (`ranker.ndcg@10`, `ranker.hr@10`) and of each single
source ordering the same candidates (`ranker.baseline.<source>.ndcg@10`, ...) on their
queries go into the returned metrics, and a note says so when the ranker does not beat
the best single source.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from service.training.compiled import PROBE_ROWS, CompiledTrees, compile_trees, load_compiled
from service.training.contract import (
    ALL_SOURCES,
    CandidateSource,
    InteractionLog,
    SourceHit,
    UserEvent,
)
from service.training.data import (
    SPLIT_HOLDOUTS,
    history_of,
    split_last_positives,
    subset,
)
from service.training.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    MISSING_RANK,
    build_features,
    without_profile_columns,
)
from service.training.pseudo_facets import (
    FACET_POOL,
    GroupingInputs,
    Vector,
    facet_hits,
    grouped_facets,
    pseudo_facets,
)

logger = logging.getLogger(__name__)

MIN_USERS = 20  # usable users below which no ranker is trained
CANDIDATES_PER_SOURCE = 100
VALIDATION_SHARE = 0.2
MAX_NEGATIVES = 200  # per training user; random, the held-out item always kept
K = 10
MODEL_FILE = "ranker.txt"
META_FILE = "ranker.json"
LGBM_PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "n_estimators": 200, "learning_rate": 0.05,
    "num_leaves": 15, "min_child_samples": 50, "colsample_bytree": 0.8,
    "subsample": 0.8, "subsample_freq": 1,
    "lambdarank_truncation_level": 20, "verbose": -1,
}
# Boosters trained on the same samples with different seeds (their row and feature
# bagging differs), scores averaged. One: three (at `216d687`) raised the ranker's
# cross-validated NDCG@10 by 0.0014-0.0019 but not the hybrid lists' in the committed
# evaluation, and their compiled library scored a request's ~400 rows in 3.3 ms against
# one booster's 0.39 ms (README, "Where ours stands").
BOOSTERS = 1

class CandidateModels(Protocol):
    """What training needs of the fitted base models (H1's `BaseModels`)."""

    def candidates(self, history: list[UserEvent], n: int, exclude: set[str],
                   now: float) -> dict[CandidateSource, dict[str, SourceHit]]: ...

    def popularity(self, item_ids: list[str], now: float
                   ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

    def cooccurrence_means(self, groups: Sequence[Sequence[str]], columns: Sequence[str]
                           ) -> npt.NDArray[np.float64]: ...


class FeatureVersionMismatch(ValueError):
    """A saved ranker was trained on another feature list than this code builds."""


class LearnedRanker:
    """LightGBM boosters (`BOOSTERS` of them, differently seeded, their scores averaged)
    plus the feature-list version their rows must have; served by their compiled trees
    when they load (`compiled.py`), else by LightGBM."""

    def __init__(self, boosters: Sequence[lgb.Booster], feature_version: str = FEATURE_VERSION,
                 probe: npt.NDArray[np.float32] | None = None,
                 profile_columns: bool = True) -> None:
        if not boosters:
            raise ValueError("a ranker needs at least one booster")
        self.boosters = list(boosters)
        self.feature_version = feature_version
        # False: trained with the profile's columns blank (`choose_profile_columns`), so
        # its trees never read them.
        self.profile_columns = profile_columns
        self.version = (f"lgbm-lambdarank/{feature_version}"
                        + ("" if profile_columns else "/without-profile"))
        self.probe = probe  # training rows the compiled trees are checked on
        self.compiled: CompiledTrees | None = None
        self.compile_problem: str | None = None  # why serving uses LightGBM, if it does

    def predict(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """The boosters' mean score per row, by LightGBM."""
        total = np.zeros(len(features), dtype=np.float64)
        for booster in self.boosters:
            total += np.asarray(booster.predict(features, num_threads=1), dtype=np.float64)
        return total / len(self.boosters)

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """One score per row, higher is better. One thread: requests run side by side."""
        if len(features) == 0:
            return np.zeros(0, dtype=np.float32)
        if self.compiled is not None:
            return self.compiled.score(features).astype(np.float32)
        return self.predict(features).astype(np.float32)

    def feature_importance(self) -> npt.NDArray[np.float64]:
        """Splits per feature, summed over the boosters."""
        total: npt.NDArray[np.float64] = np.sum(
            [b.feature_importance() for b in self.boosters], axis=0, dtype=np.float64)
        return total

    def save(self, path: Path) -> None:
        """Writes the LightGBM text models, their compiled trees when this host can build
        them, and a JSON naming the feature list (and why nothing was compiled), in `path`."""
        path.mkdir(parents=True, exist_ok=True)
        names = [MODEL_FILE] + [f"ranker-{n}.txt" for n in range(1, len(self.boosters))]
        for name, booster in zip(names, self.boosters, strict=True):
            booster.save_model(str(path / name))
        problem = ("no probe rows to check compiled trees on" if self.probe is None
                   else compile_trees(self.boosters, path, self.probe))
        (path / META_FILE).write_text(json.dumps({
            "feature_version": self.feature_version, "features": list(FEATURE_NAMES),
            "model": MODEL_FILE, "models": names, "kind": "lightgbm-lambdarank",
            "profile_columns": self.profile_columns,
            "compiled": problem is None, "compile_problem": problem}, indent=2))

    @classmethod
    def load(cls, path: Path) -> LearnedRanker:
        meta = json.loads((path / META_FILE).read_text())
        version = meta.get("feature_version")
        if version != FEATURE_VERSION:
            raise FeatureVersionMismatch(
                f"the ranker in {path} was trained on feature list {version!r}, but this "
                f"code builds {FEATURE_VERSION!r}; retrain the tenant's models")
        names = meta.get("models") or [meta.get("model", MODEL_FILE)]  # one, before ensembles
        ranker = cls([lgb.Booster(model_file=str(path / n)) for n in names], version,
                     profile_columns=bool(meta.get("profile_columns", True)))
        ranker.compiled, problem = load_compiled(path, ranker.predict)
        ranker.compile_problem = problem or meta.get("compile_problem")
        if problem is not None:
            logger.warning("ranker in %s scored by LightGBM: %s", path, problem)
        return ranker


def saved_feature_version(path: Path) -> str | None:
    """The feature list the ranker saved at `path` was trained on; None when no ranker is
    saved there (or its file cannot be read)."""
    try:
        version = json.loads((path / META_FILE).read_text()).get("feature_version")
    except (OSError, ValueError, AttributeError):
        return None
    return str(version) if version is not None else None


# -- samples ---------------------------------------------------------------------------


@dataclass
class Sample:
    """One held-out user: their candidates' features and which candidate was held out."""

    user: str
    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int32]


def _ndcg_hr(order: npt.NDArray[np.int64], labels: npt.NDArray[np.int32]) -> tuple[float, float]:
    top = labels[order[:K]]
    hits = np.flatnonzero(top)
    if len(hits) == 0:
        return 0.0, 0.0
    return 1.0 / math.log2(int(hits[0]) + 2), 1.0


def _order_by(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return np.argsort(-scores, kind="stable").astype(np.int64)


def evaluate(samples: Sequence[Sample], scorer: Callable[[npt.NDArray[np.float32]],
                                                          npt.NDArray[np.float32]] | None
             ) -> dict[str, float]:
    """NDCG@10 and HR@10 of the ranker (when given) and of each single source, over every
    sample (a held-out item no source proposed counts as a miss for all)."""
    from service.training.features import COLUMN

    results: dict[str, list[tuple[float, float]]] = {s: [] for s in ALL_SOURCES}
    results["ranker"] = []
    for s in samples:
        for source in ALL_SOURCES:
            rank = s.features[:, COLUMN[f"rank_{source}"]].astype(np.float64)
            proposed = rank < MISSING_RANK
            order = _order_by(np.where(proposed, -rank, -np.inf))
            order = order[proposed[order]]
            results[source].append(_ndcg_hr(order, s.labels))
        if scorer is not None:
            results["ranker"].append(_ndcg_hr(
                _order_by(scorer(s.features).astype(np.float64)), s.labels))
    metrics: dict[str, float] = {}
    for name, values in results.items():
        if values:
            key = "ranker" if name == "ranker" else f"ranker.baseline.{name}"
            metrics[f"{key}.ndcg@10"] = float(np.mean([v[0] for v in values]))
            metrics[f"{key}.hr@10"] = float(np.mean([v[1] for v in values]))
    return metrics


def query_ndcgs(samples: Sequence[Sample],
                scorer: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
                ) -> npt.NDArray[np.float64]:
    """The scorer's NDCG@10 on each sample, in order."""
    return np.asarray([_ndcg_hr(_order_by(scorer(s.features).astype(np.float64)), s.labels)[0]
                       for s in samples], dtype=np.float64)


def build_samples(log: InteractionLog, models: CandidateModels,
                  held: Mapping[int, Sequence[tuple[list[int], int]]],
                  item_vectors: Mapping[str, Vector] | None, seed: int,
                  progress: bool = False, grouping: GroupingInputs | None = None,
                  workers: int = 1) -> list[Sample]:
    """Candidates, features and labels for each held-out event of each user, in user
    order. With `workers` > 1 and at least `PARALLEL_MIN_QUERIES` queries, that many
    processes build them (see `_parallel_samples`); the samples are the same."""
    job = SampleJob(log, models, item_vectors, seed, grouping)
    users = sorted(held)
    chunks = [{u: held[u] for u in users[i:i + USERS_PER_TASK]}
              for i in range(0, len(users), USERS_PER_TASK)]
    bar: Any = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(users), desc="ranker samples", unit="user")
    try:
        queries = sum(len(q) for q in held.values())
        if workers > 1 and len(chunks) > 1 and queries >= PARALLEL_MIN_QUERIES:
            parts = _parallel_samples(job, chunks, workers, bar)
            if parts is not None:
                return [s for part in parts for s in part]
        samples: list[Sample] = []
        for chunk in chunks:
            samples.extend(job.run(chunk))
            if bar is not None:
                bar.update(len(chunk))
        return samples
    finally:
        if bar is not None:
            bar.close()


USERS_PER_TASK = 20  # users per task handed to a sample-building process
PARALLEL_MIN_QUERIES = 300  # below this, starting processes costs more than it saves


@dataclass
class SampleJob:
    """What building one user's samples reads: the log, the fitted base models, the item
    vectors and the grouping inputs; plain values, so a process can get a copy."""

    log: InteractionLog
    models: CandidateModels
    item_vectors: Mapping[str, Vector] | None
    seed: int
    grouping: GroupingInputs | None

    def __post_init__(self) -> None:
        self.vector_ids = sorted(self.item_vectors) if self.item_vectors else []
        self.matrix = (np.stack([self.item_vectors[i] for i in self.vector_ids])
                       .astype(np.float32) if self.item_vectors and self.vector_ids else None)

    def __getstate__(self) -> dict[str, Any]:
        # The stacked matrix is rebuilt where the job lands, not shipped twice.
        return {k: v for k, v in self.__dict__.items() if k not in ("vector_ids", "matrix")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def run(self, held: Mapping[int, Sequence[tuple[list[int], int]]]) -> list[Sample]:
        """The samples of these users' held-out events, in user order."""
        return [sample for user in sorted(held) for query in held[user]
                if (sample := self.sample(user, *query)) is not None]

    def sample(self, user: int, history_rows: list[int], target_row: int) -> Sample | None:
        log, item_vectors = self.log, self.item_vectors
        history = history_of(log, history_rows)
        target = log.item_ids[int(log.items[target_row])]
        now = float(log.ts[target_row])
        consumed = {e.item_id for e in history}
        hits: dict[CandidateSource, dict[str, SourceHit]] = dict(
            self.models.candidates(history, CANDIDATES_PER_SOURCE, consumed, now))
        facets = ([] if not item_vectors
                  else grouped_facets(history, item_vectors, self.grouping)
                  if self.grouping is not None
                  else pseudo_facets(history, item_vectors, now, self.seed))
        hits["facet"] = facet_hits(facets, self.vector_ids, self.matrix, FACET_POOL, consumed)
        candidates = sorted({i for found in hits.values() for i in found} - consumed)
        if not candidates:
            return None
        vectors = None
        if item_vectors:
            dim = len(next(iter(item_vectors.values())))
            zero = np.zeros(dim, dtype=np.float32)
            vectors = np.stack([item_vectors.get(i, zero) for i in candidates])
        features = build_features(candidates, hits, history, vectors, facets,
                                  self.models.popularity(candidates, now), now,
                                  cooccurrence=self.models.cooccurrence_means)
        labels = np.array([int(i == target) for i in candidates], dtype=np.int32)
        return Sample(log.user_ids[user], features, labels)


_WORKER_JOB: SampleJob | None = None


def _start_worker(job: SampleJob) -> None:
    """In a sample-building process: one thread each for torch and the BLAS libraries
    (the processes share the cores), and the job kept for every task."""
    global _WORKER_JOB
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _WORKER_JOB = job


def _worker_samples(held: Mapping[int, Sequence[tuple[list[int], int]]]) -> list[Sample]:
    assert _WORKER_JOB is not None, "the worker was started without its job"
    return _WORKER_JOB.run(held)


def _parallel_samples(job: SampleJob, chunks: list[dict[int, Sequence[tuple[list[int], int]]]],
                      workers: int, bar: Any) -> list[list[Sample]] | None:
    """Each chunk's samples, built by `workers` spawned processes (fresh interpreters:
    forking the service, whose other threads may hold locks, is not safe), in chunk
    order. None, with a warning, when the processes could not run it: the caller then
    builds the samples itself."""
    import concurrent.futures
    import multiprocessing

    parts: list[list[Sample]] = []
    try:
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(job,)) as pool:
            for chunk, part in zip(chunks, pool.map(_worker_samples, chunks), strict=True):
                parts.append(part)
                if bar is not None:
                    bar.update(len(chunk))
    except Exception as exc:  # a job that cannot travel, a dead process: build in place
        # (a fault in the sample code itself then shows there, raised as it is)
        logger.warning("building the ranker's samples in one process: %d worker processes "
                    "failed (%s: %s)", workers, type(exc).__name__, exc)
        if bar is not None:
            bar.reset()
        return None
    return parts


def _training_arrays(samples: Sequence[Sample], rng: np.random.Generator
                     ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32], list[int]]:
    xs, ys, groups = [], [], []
    for s in samples:
        positive = np.flatnonzero(s.labels)
        if len(positive) == 0:
            continue  # nothing to learn from a user whose item no source found
        negative = np.flatnonzero(s.labels == 0)
        if len(negative) > MAX_NEGATIVES:
            negative = np.sort(rng.choice(negative, size=MAX_NEGATIVES, replace=False))
        rows = np.concatenate([positive, negative])
        xs.append(s.features[rows])
        ys.append(s.labels[rows])
        groups.append(len(rows))
    if not xs:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32), np.zeros(0, np.int32), []
    return np.concatenate(xs), np.concatenate(ys), groups


def _fit_boosters(x: npt.NDArray[np.float32], y: npt.NDArray[np.int32], groups: list[int],
                  seed: int) -> list[lgb.Booster]:
    boosters = []
    for n in range(BOOSTERS):
        model = lgb.LGBMRanker(**LGBM_PARAMS, random_state=seed + n, n_jobs=2,
                               deterministic=True, force_row_wise=True)
        model.fit(x, y, group=groups, feature_name=list(FEATURE_NAMES))
        boosters.append(model.booster_)
    return boosters


def choose_profile_columns(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int32], groups: list[int],
    probe: npt.NDArray[np.float32], valid: Sequence[Sample], seed: int,
) -> tuple[LearnedRanker, dict[str, float], list[str]]:
    """The ranker with the profile's columns, or the one trained without them (the same
    rows with those columns blank: `without_profile_columns`) unless the profile's beats
    it on the validation users by more than one standard error of the paired difference
    in NDCG@10 (the one-standard-error rule: the simpler model unless the richer one is
    better beyond noise). Where the facets carry nothing the trained sources lack, the
    profile's columns only add noise to the order; the facets still propose candidates,
    calibrate the list and give reasons either way. Returns (ranker, metrics, notes)."""
    plain_x = without_profile_columns(x)
    plain = LearnedRanker(_fit_boosters(plain_x, y, groups, seed),
                          probe=without_profile_columns(probe), profile_columns=False)
    if np.array_equal(plain_x, x):  # no profile in the rows (no vectors): nothing to weigh
        return plain, {"ranker.profile_columns": 0.0}, []
    full = LearnedRanker(_fit_boosters(x, y, groups, seed), probe=probe)
    gain = query_ndcgs(valid, full.score) - query_ndcgs(valid, plain.score)
    mean = float(gain.mean()) if len(gain) else 0.0
    se = float(gain.std(ddof=1) / math.sqrt(len(gain))) if len(gain) > 1 else math.inf
    use = mean > se
    metrics = {"ranker.profile_columns": float(use), "ranker.profile_gain.ndcg@10": mean,
               "ranker.profile_gain.se": se}
    notes = [] if use else [
        f"ranked without the profile's columns: with them the ranker did not beat the one "
        f"without by one standard error on validation (NDCG@10 {mean:+.4f}, SE {se:.4f}); "
        "the facets still propose candidates, calibrate lists and give reasons"]
    return (full if use else plain), metrics, notes


def train_ranker(
    log: InteractionLog, fit_fn: Callable[[InteractionLog], CandidateModels],
    item_texts: Mapping[str, str] | None = None, *,
    item_vectors: Mapping[str, Vector] | None = None, seed: int = 0, progress: bool = False,
    grouping: GroupingInputs | None = None, holdouts: int = SPLIT_HOLDOUTS,
    workers: int = 1, choose_profile: bool = False,
) -> tuple[LearnedRanker | None, dict[str, float], list[str]]:
    """(ranker or None, validation metrics, notes). `item_texts` is accepted for the
    trainer's call shape; the base models see it through `fit_fn`. `choose_profile`
    (the setting `ranker_choose_facet_features`):
    keep the profile's columns only when they beat the ranker without them on
    validation (`choose_profile_columns`); off by default: on ml-latest-small the rule
    dropped them, which left the evaluation where it was and cost faithfulness on
    validation (README, session 35), so the facets keep their say in the order."""
    del item_texts
    keep, held = split_last_positives(log, seed, holdouts)
    if len(held) < MIN_USERS:
        return None, {}, ["too little data for a ranker"]
    models = fit_fn(subset(log, keep))
    samples = build_samples(log, models, held, item_vectors, seed, progress, grouping,
                            workers)
    rng = np.random.default_rng(seed)
    users = sorted({s.user for s in samples})
    order = rng.permutation(len(users))
    n_valid = max(1, int(round(len(users) * VALIDATION_SHARE)))
    held_users = {users[i] for i in order[:n_valid].tolist()}
    valid = [s for s in samples if s.user in held_users]
    train = [s for s in samples if s.user not in held_users]
    x, y, groups = _training_arrays(train, rng)
    if len(groups) < MIN_USERS // 2:
        return None, {}, ["too little data for a ranker: the sources found the held-out "
                          f"item for only {len(groups)} training samples"]
    probe = x[np.sort(rng.choice(len(x), size=min(PROBE_ROWS, len(x)), replace=False))]
    if choose_profile:
        ranker, choice, notes = choose_profile_columns(x, y, groups, probe, valid, seed)
    else:
        ranker, choice, notes = LearnedRanker(_fit_boosters(x, y, groups, seed),
                                              probe=probe), {}, []
    metrics = evaluate(valid, ranker.score)
    metrics.update(choice)
    metrics["ranker.validation_users"] = float(len(held_users))
    metrics["ranker.validation_samples"] = float(len(valid))
    metrics["ranker.training_samples"] = float(len(groups))
    singles = {s: metrics.get(f"ranker.baseline.{s}.ndcg@10", 0.0) for s in ALL_SOURCES}
    best = max(singles, key=lambda s: singles[s])
    metrics["ranker.best_source.ndcg@10"] = singles[best]
    if metrics["ranker.ndcg@10"] <= singles[best]:
        notes.append(f"the ranker did not beat the best single source ({best}) on "
                     f"validation: NDCG@10 {metrics['ranker.ndcg@10']:.4f} vs "
                     f"{singles[best]:.4f}")
    return ranker, metrics, notes
