"""The runner: fit once, full-catalog top K per test user, contract enforced, means reported."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping, Sequence

import pytest

from evals.protocol import leave_last_out
from evals.registry import MODELS, RandomRecommender
from evals.runner import ContractViolation, evaluate, genre_vectors
from evals.types import Interaction, ItemInfo, Split
from tests.utils.evals import make_dataset


class FixedList:
    """Recommends a fixed preference order minus the excluded items; records its calls."""

    name = "fixed"

    def __init__(self, order: Sequence[str], filter_excluded: bool = True) -> None:
        self.order = list(order)
        self.filter_excluded = filter_excluded
        self.fitted_on: list[Interaction] = []
        self.calls: dict[str, tuple[list[str], set[str], int]] = {}

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        self.fitted_on = list(train)

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        self.calls[user] = ([i.item for i in history], set(exclude), k)
        order = [i for i in self.order if i not in exclude or not self.filter_excluded]
        return order[:k]


@pytest.fixture
def split() -> Split:
    # u1 consumed a, b and must find c; u2 consumed a and must find z; u3 is not a test user.
    dataset = make_dataset([
        ("u1", "a", 1, 5.0), ("u1", "b", 2, 2.0), ("u2", "a", 3, 4.0), ("u3", "d", 4, 5.0),
        ("u1", "c", 5, 5.0), ("u2", "z", 6, 4.0),
    ], items=["e", "f"])
    return leave_last_out(dataset)


class SleepingList(FixedList):
    """Takes `fit_pause` seconds to fit and `pause` seconds per list."""

    def __init__(self, order: Sequence[str], fit_pause: float, pause: float) -> None:
        super().__init__(order)
        self.fit_pause, self.pause = fit_pause, pause

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        time.sleep(self.fit_pause)
        super().fit(train, items)

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        time.sleep(self.pause)
        return super().recommend(user, history, k, exclude)


def test_timings_are_the_fit_and_the_mean_list(split: Split) -> None:
    model = SleepingList(["a", "d", "c"], fit_pause=0.3, pause=0.02)
    result = evaluate(model, split, _items(split), k=3, progress=False)
    assert result["fit_s"] >= 0.3  # the fit, timed
    # Per list (two users), and without the fit: with it the mean would be over 160 ms.
    assert 20 <= result["ms_per_user"] < 150


def _items(split: Split) -> dict[str, ItemInfo]:
    ids = {"a", "b", "c", "d", "e", "f", "z"}
    genres = {"a": ("x",), "b": ("y",), "c": ("x", "y"), "d": ("y",), "e": (), "f": ("x",)}
    return {i: ItemInfo(item_id=i, title=i, genres=genres.get(i, ())) for i in sorted(ids)}


def test_hand_computed_means_and_exclusion(split: Split) -> None:
    model = FixedList(["a", "d", "c", "e", "f", "b"])
    result = evaluate(model, split, _items(split), k=3, progress=False)
    assert model.fitted_on == split.train
    assert model.calls["u1"] == (["a", "b"], {"a", "b"}, 3)
    assert model.calls["u2"] == (["a"], {"a"}, 3)
    assert set(model.calls) == {"u1", "u2"}
    # u1 gets [d, c, e]: c at rank 2. u2 gets [d, c, e]: z missed.
    assert result["hr@3"] == pytest.approx(0.5)
    assert result["recall@3"] == pytest.approx(0.5)
    assert result["mrr@3"] == pytest.approx(0.25)
    assert result["ndcg@3"] == pytest.approx(0.5 / math.log2(3))
    assert result["coverage"] == pytest.approx(3 / 7)
    assert result["users"] == 2
    assert "diversity" not in result
    # novelty from 4 training interactions (a twice, b, d) + 7 items: d 2/11, c 1/11, e 1/11
    expected = (-math.log2(2 / 11) - 2 * math.log2(1 / 11)) / 3
    assert result["novelty"] == pytest.approx(expected)


def test_diversity_uses_the_vectors_given(split: Split) -> None:
    items = _items(split)
    vectors = genre_vectors(items)
    assert "e" not in vectors and "z" not in vectors
    assert vectors["c"] == [1.0, 1.0]
    result = evaluate(FixedList(["a", "d", "c", "e", "f"]), split, items, k=3,
                      item_vectors=vectors, progress=False)
    # [d, c, e] for both users: e has no genres; d=(y) vs c=(x, y): 1 - 1/sqrt2
    assert result["diversity"] == pytest.approx(1 - 1 / math.sqrt(2))


@pytest.mark.parametrize(("order", "message"), [
    (["a", "c", "d"], "consumed"),
    (["c", "nope"], "not in the catalog"),
])
def test_contract_violations_stop_the_run(split: Split, order: list[str], message: str) -> None:
    with pytest.raises(ContractViolation, match=message):
        evaluate(FixedList(order, filter_excluded=False), split, _items(split), k=3,
                 progress=False)


def test_too_long_or_repeating_lists_stop_the_run(split: Split) -> None:
    class Sloppy(FixedList):
        def recommend(self, user: str, history: Sequence[Interaction], k: int,
                      exclude: set[str]) -> list[str]:
            return self.order

    with pytest.raises(ContractViolation, match="returned 4 items for k=3"):
        evaluate(Sloppy(["c", "d", "e", "f"]), split, _items(split), k=3, progress=False)
    with pytest.raises(ContractViolation, match="twice"):
        evaluate(Sloppy(["c", "c"]), split, _items(split), k=3, progress=False)


def test_random_recommender_is_seeded_and_respects_exclusion(split: Split) -> None:
    items = {f"i{n}": ItemInfo(item_id=f"i{n}", title="t") for n in range(50)}
    model = RandomRecommender(seed=3)
    model.fit([], items)
    exclude = {f"i{n}" for n in range(30)}
    first = model.recommend("u", [], 5, exclude)
    assert len(first) == len(set(first)) == 5 and not set(first) & exclude
    assert model.recommend("u", [], 5, exclude) == first
    other = RandomRecommender(seed=4)
    other.fit([], items)
    assert any(other.recommend(u, [], 5, exclude) != model.recommend(u, [], 5, exclude)
               for u in ("u", "v", "w"))
    # fewer than k items left: all of them, nothing excluded
    almost_all = {f"i{n}" for n in range(47)}
    assert sorted(model.recommend("u", [], 5, almost_all)) == ["i47", "i48", "i49"]
    registered = MODELS["random"](argparse.Namespace(seed=3))
    assert isinstance(registered, RandomRecommender) and registered.seed == 3


def test_perfect_model_scores_one(split: Split) -> None:
    class Oracle(FixedList):
        def recommend(self, user: str, history: Sequence[Interaction], k: int,
                      exclude: set[str]) -> list[str]:
            return list(split.targets[user])

    result = evaluate(Oracle([]), split, _items(split), k=10, progress=False)
    for key in ("hr@10", "recall@10", "mrr@10", "ndcg@10"):
        assert result[key] == pytest.approx(1.0)
