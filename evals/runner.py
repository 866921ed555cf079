"""Fit one recommender on a split and score it on every test user, full catalog.

Every model is asked for its top K over the whole catalog with the user's consumed
items excluded; scores are never computed against sampled negatives, because those
inflate and reorder results. A model that recommends a consumed item, an unknown
item, a repeat or more than K items breaks the contract and stops the run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm

from evals import metrics
from evals.types import ItemInfo, Recommender, Split


class ContractViolation(AssertionError):
    """A recommender returned a list the protocol forbids."""


def evaluate(recommender: Recommender, split: Split, items: Mapping[str, ItemInfo], k: int,
             item_vectors: Mapping[str, Any] | None = None,
             progress: bool = True,
             per_user: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Mean per-user metrics plus timing (`fit_s`, `ms_per_user`) and `users` scored.

    Given `per_user`, it is filled with each user's `ndcg` and `hr` at K, users in sorted
    order (the same order for every model of a run, for `evals.significance`).

    Keys: `ndcg@K`, `hr@K`, `recall@K`, `mrr@K`, `coverage`, `novelty`, and
    `diversity` when `item_vectors` are given (and some list had two items with vectors).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    started = time.perf_counter()
    recommender.fit(split.train, items)
    fit_s = time.perf_counter() - started

    shares = metrics.popularity_shares(split.train, items)
    per_metric: dict[str, list[float]] = {name: [] for name in ("ndcg", "hr", "recall", "mrr")}
    novelties: list[float] = []
    diversities: list[float] = []
    lists: list[list[str]] = []
    recommend_s = 0.0
    users = sorted(split.targets)
    for user in tqdm(users, desc=f"eval {recommender.name}", unit="user", disable=not progress):
        history = split.history.get(user, [])
        exclude = {e.item for e in history}
        started = time.perf_counter()
        ranked = list(recommender.recommend(user, history, k, set(exclude)))
        recommend_s += time.perf_counter() - started
        _check(recommender.name, user, ranked, k, exclude, items)
        targets = set(split.targets[user])
        per_metric["ndcg"].append(metrics.ndcg(ranked, targets, k))
        per_metric["hr"].append(metrics.hit_rate(ranked, targets, k))
        per_metric["recall"].append(metrics.recall(ranked, targets, k))
        per_metric["mrr"].append(metrics.mrr(ranked, targets, k))
        user_novelty = metrics.novelty(ranked, shares)
        if user_novelty is not None:
            novelties.append(user_novelty)
        if item_vectors is not None:
            diversity = metrics.intra_list_diversity(ranked, item_vectors)
            if diversity is not None:
                diversities.append(diversity)
        lists.append(ranked)

    if per_user is not None:
        per_user.update(ndcg=list(per_metric["ndcg"]), hr=list(per_metric["hr"]))
    result = {f"{name}@{k}": _mean(values) for name, values in per_metric.items()}
    result["coverage"] = metrics.catalog_coverage(lists, len(items)) if items else 0.0
    result["novelty"] = _mean(novelties)
    if diversities:
        result["diversity"] = statistics.fmean(diversities)
    result["users"] = float(len(users))
    result["fit_s"] = fit_s
    result["ms_per_user"] = 1000 * recommend_s / len(users) if users else 0.0
    return result


def genre_vectors(items: Mapping[str, ItemInfo]) -> dict[str, list[float]]:
    """Multi-hot genre vectors for intra-list diversity; items without genres get none."""
    vocabulary = sorted({g for info in items.values() for g in info.genres})
    index = {g: n for n, g in enumerate(vocabulary)}
    vectors: dict[str, list[float]] = {}
    for item_id, info in items.items():
        if info.genres:
            row = [0.0] * len(vocabulary)
            for genre in info.genres:
                row[index[genre]] = 1.0
            vectors[item_id] = row
    return vectors


def _check(model: str, user: str, ranked: list[str], k: int, exclude: set[str],
           items: Mapping[str, ItemInfo]) -> None:
    problem = ""
    if len(ranked) > k:
        problem = f"returned {len(ranked)} items for k={k}"
    elif len(set(ranked)) != len(ranked):
        problem = "returned an item twice"
    elif consumed := [i for i in ranked if i in exclude]:
        problem = f"recommended consumed item(s) {consumed[:3]}"
    elif unknown := [i for i in ranked if i not in items]:
        problem = f"recommended item(s) not in the catalog {unknown[:3]}"
    if problem:
        raise ContractViolation(f"{model} for user {user!r}: {problem}")


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0
