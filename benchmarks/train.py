"""Training time and held-out quality of a tenant's models on ml-latest-small.

Reads the bundled MovieLens copy with the eval loaders, turns its ratings into the log
the service trains on (a 5-star scale, as the service's default settings), and runs the
same training job as `interest-tracker train` without the database: held-out models and
metrics (leave-last-positive-out, 500 sampled users), the LightGBM ranker on time-split
samples (its facet features from MiniLM item vectors, embedded first and not counted, as
the service reads them from the item collection, and its pseudo-facets grouped as a
profile refresh groups, over the movies as the demo's catalog holds them), then the
final fit.

Last line: {"seconds", "events", "items", "users", "ranker", "sources": {source:
{"hr@10", "ndcg@10"}}, "heldout_users", "notes"}; `sources` has `ranker` too.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/profile.py shadows the standard library's `profile` (which torch imports
# via cProfile) when Python puts this script's folder first on the path: take it off.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

from evals.datasets import ML_LATEST_SMALL, load_movielens  # noqa: E402
from evals.ranker_ablation import movie_grouping, movie_vectors  # noqa: E402
from service.core.config import Settings  # noqa: E402
from service.training.data import event_weight, log_from_rows  # noqa: E402
from service.training.ranker import train_ranker  # noqa: E402
from service.training.service import train_log  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ML_LATEST_SMALL,
                        help="any MovieLens folder (csv, .dat or ml-100k layout)")
    parser.add_argument("--sequence-seconds", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=Settings().train_workers,
                        help="processes building the ranker's samples (the service's "
                             "train_workers setting by default)")
    parser.add_argument("--no-vectors", action="store_true",
                        help="train the ranker without item vectors (no facet features)")
    args = parser.parse_args()

    dataset = load_movielens(args.data)
    texts = {item_id: info.text for item_id, info in dataset.items.items()}
    vectors = None
    embed_seconds = 0.0
    if not args.no_vectors:
        # What `interest-tracker train` reads from the item collection, where the catalog
        # was embedded when it was indexed: made here first, and not counted as training.
        began = time.monotonic()
        vectors = movie_vectors(dataset.items)
        embed_seconds = time.monotonic() - began
    grouping = None if vectors is None else movie_grouping(dataset.items)
    started = time.monotonic()
    log = log_from_rows((x.user, x.item, float(x.ts), event_weight("rating", x.rating, 5.0),
                         f"r{x.seq}") for x in dataset.interactions)
    loaded = time.monotonic() - started
    trained = train_log(log, texts, seed=args.seed, sequence_seconds=args.sequence_seconds,
                        progress=True,
                        ranker_trainer=partial(train_ranker, item_vectors=vectors,
                                               seed=args.seed, progress=True,
                                               grouping=grouping, workers=args.workers),
                        workers=args.workers)
    sources: dict[str, dict[str, float]] = {}
    for key, value in trained.heldout.items():
        if "." in key:
            source, metric = key.split(".", 1)
            sources.setdefault(source, {})[metric] = value
    print(json.dumps({
        "seconds": round(time.monotonic() - started, 2),
        "load_seconds": round(loaded, 2), "embed_seconds_not_counted": round(embed_seconds, 2),
        "ranker": trained.ranker is not None,
        "train_seconds": round(trained.seconds, 2),
        "events": len(log), "items": len(trained.models.item_ids),
        "users": len(log.user_ids), "sources": sources,
        "heldout_users": int(trained.heldout.get("users", 0)), "notes": trained.notes}))


if __name__ == "__main__":
    main()
