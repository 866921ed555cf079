"""Do the profile's facets help the learned ranker? A user-grouped k-fold ablation on the
ranker's own samples, tighter than comparing two evaluation runs.

One evaluation run trains one ranker per variant, and a ranker is a random draw (split,
bagging): `ours` and `ours-no-llm` differ by about as much between two seeds as between
each other. This builds the ranker's samples once, exactly as training does
(`service.training.ranker.build_samples`: the time split, the base models fitted without
the held-out tails, pseudo-facets grouped as a refresh groups, the facet source gathered
as serving gathers it), over the *validation* split's training part (no test target is
ever seen), then trains one LightGBM booster with the tenant's parameters (as the tenant
does: `BOOSTERS` is one) on `folds` user folds, for
each of `seeds` fold assignments, twice: with every feature, and without the profile (the
facet source's own candidates dropped and every facet column zeroed, as `ours-no-llm`'s
ranker is trained). Both score the same queries, so the paired difference of their
NDCG@10 and its standard error say what the facet features are worth.

    python -m evals.ranker_ablation [--holdouts 3] [--folds 5] [--seeds 2] [--samples F]
        [--workers 1]

Prints progress on stderr and one JSON object on stdout: {"queries", "with_profile":
{"ndcg@10", "hr@10"}, "without_profile": {...}, "ndcg_diff", "ndcg_diff_se", ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from evals.types import ItemInfo
from service.training.data import SPLIT_HOLDOUTS
from service.training.features import COLUMN, MISSING_RANK, without_profile_columns
from service.training.pseudo_facets import GroupingInputs, Vector
from service.training.ranker import LGBM_PARAMS, Sample, _ndcg_hr, _order_by, _training_arrays


def without_profile(sample: Sample) -> Sample:
    """The sample as a ranker without a profile sees it: candidates only the facet source
    proposed are gone, and the facet columns read as for an item no facet proposed."""
    by_facet = sample.features[:, COLUMN["rank_facet"]] < MISSING_RANK
    features = without_profile_columns(sample.features)
    features[:, COLUMN["n_sources"]] -= by_facet
    kept = features[:, COLUMN["n_sources"]] > 0
    return replace(sample, features=features[kept], labels=sample.labels[kept])


def cross_validate(samples: Sequence[Sample], folds: int, seeds: Sequence[int]
                   ) -> npt.NDArray[np.float64]:
    """(queries x 2) NDCG@10 and HR@10 per query, each query scored by the ranker trained
    on the other folds; queries in a fixed order (seed, fold, sample), so two calls over
    the same users give paired rows."""
    users = sorted({s.user for s in samples})
    if len(users) < folds:
        raise ValueError(f"{len(users)} users cannot fill {folds} folds")
    rows: list[tuple[float, float]] = []
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(users))
        fold_of = {users[i]: n % folds for n, i in enumerate(order.tolist())}
        for fold in range(folds):
            train = [s for s in samples if fold_of[s.user] != fold]
            x, y, groups = _training_arrays(train, np.random.default_rng(seed))
            model = lgb.LGBMRanker(**LGBM_PARAMS, random_state=seed, n_jobs=1,
                                   deterministic=True, force_row_wise=True)
            model.fit(x, y, group=groups)
            for s in samples:
                if fold_of[s.user] == fold:
                    scores = np.asarray(model.predict(s.features), dtype=np.float64)
                    rows.append(_ndcg_hr(_order_by(scores), s.labels))
    return np.asarray(rows, dtype=np.float64)


def compare(samples: Sequence[Sample], folds: int, seeds: Sequence[int]) -> dict[str, Any]:
    """Both rankers over the same folds, and their paired NDCG@10 difference."""
    with_profile = cross_validate(samples, folds, seeds)
    without = cross_validate([without_profile(s) for s in samples], folds, seeds)
    diff = with_profile[:, 0] - without[:, 0]
    return {
        "queries": len(samples), "folds": folds, "seeds": list(seeds),
        "with_profile": {"ndcg@10": round(float(with_profile[:, 0].mean()), 4),
                         "hr@10": round(float(with_profile[:, 1].mean()), 4)},
        "without_profile": {"ndcg@10": round(float(without[:, 0].mean()), 4),
                            "hr@10": round(float(without[:, 1].mean()), 4)},
        "ndcg_diff": round(float(diff.mean()), 4),
        "ndcg_diff_se": round(float(diff.std(ddof=1) / math.sqrt(len(diff))), 4),
    }


def movie_vectors(items: Mapping[str, ItemInfo]) -> dict[str, Vector]:
    """The movies' MiniLM vectors, as `interest-tracker train` reads them from the item
    collection where the catalog was embedded when indexed."""
    from service.vectors.embeddings import shared_local_embedder

    ids = sorted(items)
    embedded = shared_local_embedder().embed([items[i].text for i in ids])
    return {i: np.asarray(v, dtype=np.float32) for i, v in zip(ids, embedded, strict=True)}


def movie_grouping(items: Mapping[str, ItemInfo]) -> GroupingInputs:
    """The movies as the demo's catalog holds them, with their tag weights, for the
    ranker's pseudo-facets."""
    from service.catalog.models import Item
    from service.catalog.service import count_tags
    from service.demo import movie_item
    from service.summaries.grouping import TagWeights

    rows = [movie_item(info) for info in items.values()]
    counts, total = count_tags((r["tags"], r["category"], {}) for r in rows)
    return GroupingInputs.of({r["item_id"]: Item(**r) for r in rows},
                          TagWeights.from_counts(counts, total))


def build(path: Path | None, holdouts: int, seed: int, sequence_epochs: int,
          workers: int = 1) -> list[Sample]:
    """The ranker's samples over the validation split's training part of ml-latest-small
    (or the MovieLens copy at `path`), as `interest-tracker train` would build them."""
    from evals.datasets import ML_LATEST_SMALL, load_movielens
    from evals.protocol import leave_last_out, validation_split
    from service.training.data import event_weight, log_from_rows, split_last_positives, subset
    from service.training.models import fit_base_models
    from service.training.ranker import build_samples

    dataset = load_movielens(path or ML_LATEST_SMALL)
    train = sorted(validation_split(dataset, leave_last_out).train,
                   key=lambda e: (e.ts, e.seq))
    texts = {item_id: info.text for item_id, info in dataset.items.items()}
    vectors = movie_vectors(dataset.items)
    grouping = movie_grouping(dataset.items)
    log = log_from_rows((x.user, x.item, float(x.ts),
                         event_weight("rating", x.rating, 5.0), f"r{x.seq}") for x in train)
    keep, held = split_last_positives(log, seed, holdouts)
    models = fit_base_models(subset(log, keep), item_texts=texts, seed=seed,
                             sequence_epochs=sequence_epochs, progress=True)
    return build_samples(log, models, held, vectors, seed, True, grouping, workers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="a MovieLens folder (default: the "
                        "bundled ml-latest-small)")
    parser.add_argument("--holdouts", type=int, default=SPLIT_HOLDOUTS,
                        help="held-out positives (queries) per user")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=2, help="fold assignments")
    parser.add_argument("--seed", type=int, default=0, help="split and model seed")
    parser.add_argument("--sequence-epochs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=1,
                        help="processes building the samples (as INTEREST_TRAIN_WORKERS)")
    parser.add_argument("--samples", type=Path, help="a file the built samples are kept "
                        "in and read back from on later runs (with the same other options)")
    args = parser.parse_args(argv)
    if args.holdouts < 1 or args.folds < 2 or args.seeds < 1 or args.workers < 1:
        parser.error("--holdouts, --seeds and --workers must be at least 1, --folds at "
                     "least 2")
    if args.samples is not None and args.samples.exists():
        with args.samples.open("rb") as f:
            samples = pickle.load(f)  # a file this command wrote
    else:
        samples = build(args.path, args.holdouts, args.seed, args.sequence_epochs,
                        args.workers)
        if args.samples is not None:
            with args.samples.open("wb") as f:
                pickle.dump(samples, f)
    print(f"{len(samples)} queries built; cross-validating", file=sys.stderr)
    print(json.dumps(compare(samples, args.folds, list(range(args.seeds)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
