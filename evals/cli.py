"""`interest-tracker eval`: load a dataset, split it, score every chosen model, report.

The main command line (`service/cli.py`) adds this subcommand with `add_eval_parser`;
`run_eval` is what it calls.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from evals import protocol
from evals.datasets import ML_LATEST_SMALL, load_jsonl, load_ml100k, load_movielens_latest
from evals.registry import MODELS
from evals.report import RunInfo, markdown_table, write_report
from evals.runner import evaluate, genre_vectors
from evals.types import Dataset, Split

DATASETS = ("ml-latest-small", "ml-100k", "jsonl")
PROTOCOLS = (protocol.LEAVE_LAST_OUT, protocol.GLOBAL_TIME)


def add_eval_parser(
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the `eval` subcommand; its `func` default is `run_eval`."""
    parser = subparsers.add_parser(
        "eval", help="offline evaluation of recommenders on a time-ordered dataset",
        description="Fit each model on the same training split, rank the full catalog for "
                    "every test user and write metrics.json, report.md and plots.")
    parser.add_argument("--dataset", choices=DATASETS, default="ml-latest-small")
    parser.add_argument("--path", help="dataset folder (default for ml-latest-small: the "
                                       f"bundled copy in {ML_LATEST_SMALL})")
    parser.add_argument("--events", help="jsonl: events file")
    parser.add_argument("--items", help="jsonl: items file")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=protocol.LEAVE_LAST_OUT)
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="global-time: share of interactions after the cut (default 0.2)")
    parser.add_argument("--positive-threshold", type=float, default=3.5,
                        help="ratings at or above this are positives (default 3.5)")
    parser.add_argument("--k", type=int, default=10, help="list length K (default 10)")
    parser.add_argument("--users", type=int, help="score a seeded sample of N test users")
    parser.add_argument("--seed", type=int, default=0, help="user sample and model seed")
    parser.add_argument("--models", help="comma-separated model names (default: all of "
                                         f"{', '.join(sorted(MODELS))})")
    parser.add_argument("--out", help="results folder (default results/YYYY-MM-DD)")
    parser.add_argument("--refresh-every", type=int, default=20,
                        help="ours: refresh the profile after this many replayed events")
    parser.add_argument("--replay-last", type=int, default=40,
                        help="ours: replay this many last events in refresh chunks (earlier "
                             "history is sent in one go)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_eval)
    return parser


def run_eval(args: argparse.Namespace) -> int:
    """Exit status: 0 on success, 2 on a usage or data error (printed to stderr)."""
    try:
        names = _model_names(args.models)
        if args.k < 1:
            raise ValueError("--k must be at least 1")
        if args.users is not None and args.users < 1:
            raise ValueError("--users must be at least 1")
        dataset = _load(args)
        split = _split(dataset, args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    available = len(split.targets)
    if args.users is not None:
        split = protocol.sample_users(split, args.users, args.seed)
    if not split.targets:
        print("error: the split has no test users", file=sys.stderr)
        return 2

    vectors = genre_vectors(dataset.items)
    results = {}
    for name in names:
        recommender = MODELS[name](args)
        results[name] = evaluate(recommender, split, dataset.items, args.k,
                                 item_vectors=vectors or None, progress=not args.no_progress)
        cost = getattr(recommender, "cost", None)
        if callable(cost):  # ours: LLM tokens and seconds per refresh
            results[name].update(cost())
        close = getattr(recommender, "close", None)
        if callable(close):
            close()
    run = RunInfo(dataset=dataset.name, protocol=split.protocol, k=args.k,
                  users=len(split.targets), seed=args.seed,
                  positive_threshold=args.positive_threshold, catalog_size=len(dataset.items),
                  interactions=len(dataset.interactions), train_interactions=len(split.train),
                  test_users_available=available,
                  test_fraction=args.test_fraction
                  if split.protocol == protocol.GLOBAL_TIME else None)
    out = Path(args.out or Path("results") / date.today().isoformat())
    paths = write_report(out, run, results)
    print(markdown_table(results, run.k))
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
    return load_movielens_latest(args.path or ML_LATEST_SMALL)


def _split(dataset: Dataset, args: argparse.Namespace) -> Split:
    if args.protocol == protocol.GLOBAL_TIME:
        return protocol.global_time_split(dataset, args.test_fraction, args.positive_threshold)
    return protocol.leave_last_out(dataset, args.positive_threshold)
