"""`interest-tracker eval`: load a dataset, split it, score every chosen model, report.

`add_eval_parser` is the `eval` entry point of the group `interest_tracker.commands`
(pyproject.toml), through which the main command line (`service/cli.py`) finds it;
`run_eval` is what it calls. With `--dataset synthetic` the users are generated with
planted interest changes (`evals.synthetic`), and every ours model is also scored on
how its profiles track them (`evals.drift`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from evals import protocol, synthetic
from evals.datasets import (
    ML_LATEST_SMALL,
    load_jsonl,
    load_ml100k,
    load_movielens,
)
from evals.drift import (
    category_strengths,
    planted_intervals,
    timeline_from_versions,
    tracking_metrics,
)
from evals.faithfulness import DEFAULT_RELATED_THRESHOLD
from evals.forecast import DEFAULT_DECAY, forecast_metrics
from evals.labels import label_quality, labels_of
from evals.registry import MODELS
from evals.report import (
    FacetTimeline,
    RunInfo,
    kept_metrics,
    paired_table,
    report_tables,
    write_report,
)
from evals.runner import evaluate, genre_vectors
from evals.significance import paired_differences, reference_model
from evals.tracking import DEFAULT_ASSIGN_THRESHOLD, DEFAULT_STRENGTH_FLOOR, EmbeddingAssigner
from evals.types import Dataset, Split
from service.profiles.merge import DecayRules

DATASETS = ("ml-latest-small", "ml-100k", "jsonl", "synthetic")
SYNTHETIC_USERS = 20
REPLAY_LAST = 40
SEQUENCE_EPOCHS = 15
PROTOCOLS = (protocol.LEAVE_LAST_OUT, protocol.GLOBAL_TIME)


def add_eval_parser(
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the `eval` subcommand; its `func` default is `run_eval`."""
    parser = subparsers.add_parser(
        "eval", help="offline evaluation of recommenders on a time-ordered dataset",
        description="Fit each model on the same training split, rank the full catalog for "
                    "every test user and write metrics.json, report.md and plots. "
                    "Drift tracking: --dataset synthetic generates --users users (seed "
                    "--seed) whose planted interests change at known times; each ours model "
                    "named in --models replays every test user's whole history, refreshing "
                    "every --refresh-every events, and is also scored on tracking lag, facet "
                    "precision/recall and next-period interest-mix error from its profile "
                    "versions, with a facet-timeline PNG of one user per model.",
        epilog="example: interest-tracker eval --dataset synthetic --users 20 --seed 1 "
               "--models ours,ours-no-decay,ours-template-names,most-popular --refresh-every 10")
    parser.add_argument("--dataset", choices=DATASETS, default="ml-latest-small",
                        help="synthetic: generated users with planted interest changes "
                             "(drift tracking for ours models)")
    parser.add_argument("--path", help="dataset folder (default for ml-latest-small: the "
                                       f"bundled copy in {ML_LATEST_SMALL}); with the "
                                       "default --dataset, any GroupLens MovieLens folder, "
                                       "its layout told by its ratings file: ratings.csv "
                                       "(ml-latest, ml-20m/25m/32m), ratings.dat (ml-1m, "
                                       "ml-10m) or u.data (ml-100k)")
    parser.add_argument("--events", help="jsonl: events file")
    parser.add_argument("--items", help="jsonl: items file")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=protocol.LEAVE_LAST_OUT)
    parser.add_argument("--validation", action="store_true",
                        help="score the validation split instead: the protocol applied "
                             "again to the test split's training part, so no test target "
                             "is seen (tune on it, report on the test split)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="global-time: share of interactions after the cut (default 0.2)")
    parser.add_argument("--positive-threshold", type=float, default=3.5,
                        help="ratings at or above this are positives (default 3.5)")
    parser.add_argument("--k", type=int, default=10, help="list length K (default 10)")
    parser.add_argument("--users", type=int,
                        help="score a seeded sample of N test users; synthetic: generate N "
                             f"users (default {SYNTHETIC_USERS})")
    parser.add_argument("--seed", type=int, default=0, help="user sample and model seed")
    parser.add_argument("--models", help="comma-separated model names (default: all of "
                                         f"{', '.join(sorted(MODELS))})")
    parser.add_argument("--out", help="results folder (default results/YYYY-MM-DD)")
    parser.add_argument("--refresh-every", type=int, default=20,
                        help="ours: refresh the profile after this many replayed events")
    parser.add_argument("--replay-last", type=int,
                        help="ours: replay this many last events in refresh chunks (earlier "
                             f"history is sent in one go; default {REPLAY_LAST}, synthetic: "
                             "the whole history)")
    parser.add_argument("--period-days", type=float, default=7.0,
                        help="synthetic: the next period whose interest mix each profile "
                             "snapshot is compared with (default 7 days)")
    parser.add_argument("--sequence-epochs", type=int, default=SEQUENCE_EPOCHS,
                        help="ours and sasrec: train the sequence model this many epochs "
                             "whatever the time, so results do not follow the machine's "
                             f"load (default {SEQUENCE_EPOCHS}, about 45 s on 2 idle cores; "
                             "0: the product's time budget instead)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_eval)
    return parser


def run_eval(args: argparse.Namespace) -> int:
    """Exit status: 0 on success, 2 on a usage or data error (printed to stderr)."""
    drift: synthetic.SyntheticData | None = None
    try:
        names = _model_names(args.models)
        if args.k < 1:
            raise ValueError("--k must be at least 1")
        if args.users is not None and args.users < 1:
            raise ValueError("--users must be at least 1")
        if args.period_days <= 0:
            raise ValueError("--period-days must be positive")
        if args.sequence_epochs < 0:
            raise ValueError("--sequence-epochs must be 0 or more")
        if args.dataset == "synthetic":
            drift = synthetic.generate(args.users or SYNTHETIC_USERS, args.seed)
            dataset = drift.dataset
        else:
            dataset = _load(args)
        split = _split(dataset, args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.replay_last is None and drift is None:
        args.replay_last = REPLAY_LAST  # synthetic keeps None: refreshes from the first event
    if drift is not None and not any(n.startswith("ours") for n in names):
        print("note: drift tracking needs an ours model (--models ours,...); only ranking "
              "metrics will be reported", file=sys.stderr)
    available = len(split.targets)
    if args.users is not None:
        split = protocol.sample_users(split, args.users, args.seed)
    if not split.targets:
        print("error: the split has no test users", file=sys.stderr)
        return 2

    vectors = genre_vectors(dataset.items)
    results = {}
    per_user: dict[str, dict[str, list[float]]] = {}
    faithfulness_threshold: float | None = None
    timelines: dict[str, FacetTimeline] = {}
    tracker = _Tracker(drift, split, args.period_days) if drift is not None else None
    for name in names:
        recommender = MODELS[name](args)
        try:
            per_user[name] = {}
            results[name] = evaluate(recommender, split, dataset.items, args.k,
                                     item_vectors=vectors or None,
                                     progress=not args.no_progress,
                                     per_user=per_user[name])
            versions = getattr(recommender, "profile_versions", None)
            if tracker is not None and callable(versions):  # ours on synthetic users
                rules = getattr(recommender, "decay_rules", lambda: DEFAULT_DECAY)()
                scores, timelines[name] = tracker.score(versions, rules)
                results[name].update(scores)
            if callable(versions):  # ours: do its facet labels name topics?
                results[name].update(_label_quality(versions, split, dataset))
            cost = getattr(recommender, "cost", None)
            if callable(cost):  # ours: LLM tokens and seconds per refresh
                results[name].update(cost())
            faithfulness = getattr(recommender, "faithfulness", None)
            if callable(faithfulness):  # ours: does the cited evidence hold up?
                results[name].update(faithfulness())
                faithfulness_threshold = DEFAULT_RELATED_THRESHOLD
        finally:  # ours holds an app and a temporary folder
            close = getattr(recommender, "close", None)
            if callable(close):
                close()
    run = RunInfo(dataset=dataset.name, protocol=split.protocol, k=args.k,
                  users=len(split.targets), seed=args.seed,
                  positive_threshold=args.positive_threshold, catalog_size=len(dataset.items),
                  interactions=len(dataset.interactions), train_interactions=len(split.train),
                  test_users_available=available, faithfulness_threshold=faithfulness_threshold,
                  test_fraction=args.test_fraction
                  if split.protocol.startswith(protocol.GLOBAL_TIME) else None,
                  tracking=tracker.settings(args) if tracker is not None and timelines
                  else None)
    out = Path(args.out or Path("results") / date.today().isoformat())
    reference = reference_model(list(results))
    paired = (paired_differences(per_user, reference, args.seed)
              if reference is not None and len(results) > 1 else None)
    paths = write_report(out, run, results, timelines, paired=paired, reference=reference)
    print(report_tables(run, kept_metrics(results, run.k)))
    if paired:
        print(paired_table(reference or "", paired, run.k))
    print(f"results written to {out}/ ({', '.join(p.name for p in paths.values())})")
    return 0


def _model_names(requested: str | None) -> list[str]:
    if not requested:
        # Ours replays every user through the service and its LLM: ask for it by name.
        return [n for n in MODELS if not n.startswith("ours")]
    names = list(dict.fromkeys(n.strip() for n in requested.split(",") if n.strip()))
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {', '.join(unknown) or '(none given)'}; "
                         f"available: {', '.join(sorted(MODELS))}")
    return names


def _load(args: argparse.Namespace) -> Dataset:
    if args.dataset == "jsonl":
        if not args.events or not args.items:
            raise ValueError("--dataset jsonl needs --events and --items")
        return load_jsonl(args.events, args.items)
    if args.dataset == "ml-100k":
        if not args.path:
            raise ValueError("--dataset ml-100k needs --path to the folder holding u.data")
        return load_ml100k(args.path)
    # any MovieLens folder (its layout told by its ratings file), the bundled one by default
    return load_movielens(args.path or ML_LATEST_SMALL)


def _split(dataset: Dataset, args: argparse.Namespace) -> Split:
    def split(data: Dataset) -> Split:
        if args.protocol == protocol.GLOBAL_TIME:
            return protocol.global_time_split(data, args.test_fraction,
                                              args.positive_threshold)
        return protocol.leave_last_out(data, args.positive_threshold)
    return protocol.validation_split(dataset, split) if args.validation else split(dataset)


def _label_quality(versions: Callable[[str], list[dict[str, Any]]], split: Split,
                   dataset: Dataset) -> dict[str, float]:
    titles = {user: [dataset.items[e.item].title for e in split.history.get(user, [])
                     if e.item in dataset.items] for user in split.targets}
    return label_quality({user: labels_of(versions(user)) for user in split.targets}, titles)


class _Tracker:
    """Drift tracking of ours models on the synthetic users of one run."""

    def __init__(self, data: synthetic.SyntheticData, split: Split, period_days: float) -> None:
        self.data = data
        self.users = sorted(split.targets)
        self.events = synthetic.user_events(data)
        self.period_s = round(period_days * 86_400)
        self._assigner: EmbeddingAssigner | None = None

    @property
    def assigner(self) -> EmbeddingAssigner:
        if self._assigner is None:  # MiniLM, the embedder the threshold was calibrated on
            from service.vectors.embeddings import shared_local_embedder

            self._assigner = EmbeddingAssigner(self.data.categories, shared_local_embedder())
        return self._assigner

    def score(self, versions: Callable[[str], list[dict[str, Any]]],
              rules: DecayRules = DEFAULT_DECAY) -> tuple[dict[str, float], FacetTimeline]:
        """Tracking metrics over every replayed user, and the first user's timeline."""
        by_user = {user: versions(user) for user in self.users}
        timelines = {user: timeline_from_versions(by_user[user], self.events[user])
                     for user in self.users}
        scores = tracking_metrics(timelines, self.data.truth, self.events,
                                  self.data.item_category, self.assigner, self.period_s)
        scores.update(forecast_metrics(by_user, self.events, self.data.item_category,
                                       list(self.data.categories), self.assigner,
                                       self.period_s, rules=rules))
        first = self.users[0]
        return scores, (category_strengths(timelines[first], self.assigner),
                        planted_intervals(self.data.truth[first]))

    def settings(self, args: argparse.Namespace) -> Mapping[str, Any]:
        return {"seed": args.seed, "generated_users": len(self.data.truth),
                "refresh_every": args.refresh_every, "period_days": args.period_days,
                "assign_threshold": DEFAULT_ASSIGN_THRESHOLD,
                "strength_floor": DEFAULT_STRENGTH_FLOOR, "timeline_user": self.users[0]}
