"""Metrics: hand-computed cases, and the ranking metrics against trec_eval via ir_measures."""

from __future__ import annotations

import math
import random

import ir_measures
import pytest
from ir_measures import RR, R, Success, nDCG

from evals.metrics import (
    catalog_coverage,
    hit_rate,
    intra_list_diversity,
    mrr,
    ndcg,
    novelty,
    popularity_shares,
    recall,
)
from evals.types import Interaction

# hand-computed


def test_one_hit_at_rank_two_of_two_targets() -> None:
    ranked, targets = ["x", "a", "y", "b"], {"a", "b"}
    assert hit_rate(ranked, targets, 3) == 1.0
    assert recall(ranked, targets, 3) == 0.5
    assert mrr(ranked, targets, 3) == 0.5
    # DCG = 1/log2(3); ideal DCG = 1 + 1/log2(3)
    assert ndcg(ranked, targets, 3) == pytest.approx(0.6309298 / 1.6309298)
    # at K=4 b adds 1/log2(5) = 0.4306766
    assert ndcg(ranked, targets, 4) == pytest.approx((0.6309298 + 0.4306766) / 1.6309298)
    assert recall(ranked, targets, 4) == 1.0


def test_miss_within_k_scores_zero_even_if_hit_later() -> None:
    ranked, targets = ["x", "y", "a"], ["a"]
    for metric in (hit_rate, recall, mrr, ndcg):
        assert metric(ranked, targets, 2) == 0.0
    assert mrr(ranked, targets, 3) == pytest.approx(1 / 3)
    assert ndcg(ranked, targets, 3) == pytest.approx(0.5)  # 1/log2(4), ideal 1


def test_ideal_dcg_is_capped_at_k_but_recall_is_not() -> None:
    ranked, targets = ["a", "b", "x"], {"a", "b", "c"}
    assert ndcg(ranked, targets, 2) == pytest.approx(1.0)
    assert recall(ranked, targets, 2) == pytest.approx(2 / 3)


def test_short_lists_and_bad_input() -> None:
    assert ndcg(["a"], {"a", "b"}, 10) == pytest.approx(1 / (1 + 0.6309298))
    with pytest.raises(ValueError, match="repeats"):
        ndcg(["a", "a"], {"a"}, 10)
    with pytest.raises(ValueError, match="targets"):
        recall(["a"], set(), 10)
    with pytest.raises(ValueError, match="k must"):
        hit_rate(["a"], {"a"}, 0)


def test_catalog_coverage() -> None:
    assert catalog_coverage([["a", "b"], ["b", "c"], []], 8) == pytest.approx(3 / 8)
    assert catalog_coverage([], 8) == 0.0
    with pytest.raises(ValueError):
        catalog_coverage([["a"]], 0)


def test_intra_list_diversity() -> None:
    vectors = {"x": [1.0, 0.0], "y": [0.0, 2.0], "z": [1.0, 1.0], "x2": [3.0, 0.0],
               "zero": [0.0, 0.0]}
    assert intra_list_diversity(["x", "y"], vectors) == pytest.approx(1.0)
    assert intra_list_diversity(["x", "x2"], vectors) == pytest.approx(0.0)
    # pairs: x-y 1, x-z 1 - 1/sqrt2, y-z 1 - 1/sqrt2
    expected = (1 + 2 * (1 - 1 / math.sqrt(2))) / 3
    assert intra_list_diversity(["x", "y", "z"], vectors) == pytest.approx(expected)
    assert intra_list_diversity(["x", "y", "no-vector", "zero"], vectors) == pytest.approx(1.0)
    assert intra_list_diversity(["x", "no-vector"], vectors) is None


def test_novelty_is_smoothed_self_information() -> None:
    train = [Interaction(user=u, item=i, ts=0) for u, i in
             [("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b")]]
    shares = popularity_shares(train, ["a", "b", "c"])
    # 4 interactions + 3 catalog items: a 4/7, b 2/7, unseen c 1/7
    assert shares == pytest.approx({"a": 4 / 7, "b": 2 / 7, "c": 1 / 7})
    assert novelty(["a", "c"], shares) == pytest.approx(
        (-math.log2(4 / 7) - math.log2(1 / 7)) / 2)
    rare, less_rare, common = (novelty([i], shares) for i in ("c", "b", "a"))
    assert rare is not None and less_rare is not None and common is not None
    assert rare > less_rare > common
    assert novelty([], shares) is None


# against the peer implementation (trec_eval through pytrec_eval)


def _runs(seed: int) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    rng = random.Random(seed)
    catalog = [f"i{n}" for n in range(40)]
    targets, rankings = {}, {}
    for user in range(30):
        targets[f"u{user}"] = set(rng.sample(catalog, rng.randint(1, 12)))
        rankings[f"u{user}"] = rng.sample(catalog, rng.randint(3, 25))
    targets["u-top"], rankings["u-top"] = {"i1", "i2"}, ["i1", "i2", "i3"]  # perfect
    targets["u-none"], rankings["u-none"] = {"i9"}, ["i1", "i2", "i3"]  # no hit at all
    return targets, rankings


@pytest.mark.parametrize("k", [1, 3, 10, 20])
def test_ranking_metrics_match_trec_eval(k: int) -> None:
    targets, rankings = _runs(seed=k)
    qrels = {user: dict.fromkeys(items, 1) for user, items in targets.items()}
    # Distinct descending scores, so trec_eval's own tie-breaking never applies.
    run = {user: {item: float(len(ranked) - rank) for rank, item in enumerate(ranked)}
           for user, ranked in rankings.items()}
    top_k_run = {user: {item: float(k - rank) for rank, item in enumerate(ranked[:k])}
                 for user, ranked in rankings.items()}
    ours = {nDCG @ k: ndcg, R @ k: recall, Success @ k: hit_rate}
    peer = list(ir_measures.pytrec_eval.iter_calc(list(ours), qrels, run))
    # trec_eval's recip_rank has no cutoff: on the run cut at K it is exactly MRR@K.
    peer_rr = list(ir_measures.pytrec_eval.iter_calc([RR], qrels, top_k_run))
    assert len(peer) == 3 * len(targets) and len(peer_rr) == len(targets)
    for metric in peer:
        user = metric.query_id
        assert ours[metric.measure](rankings[user], targets[user], k) == pytest.approx(
            metric.value), (str(metric.measure), user)
    for metric in peer_rr:
        user = metric.query_id
        assert mrr(rankings[user], targets[user], k) == pytest.approx(metric.value), user
