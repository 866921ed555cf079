"""Protocols: who is a test user, what they must find, and what models may learn from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from evals.protocol import global_time_split, leave_last_out, sample_users, validation_split
from evals.types import Dataset, Interaction, Split
from tests.utils.evals import make_dataset


def _events(split: Split) -> list[tuple[str, str, int]]:
    return [(i.user, i.item, i.ts) for i in split.train]


@pytest.fixture
def replay() -> Dataset:
    return make_dataset([
        ("u1", "a", 1, 4.0), ("u1", "b", 2, 2.0), ("u1", "c", 3, 5.0),  # target c
        ("u2", "d", 1, 5.0), ("u2", "e", 4, 1.0),  # last is negative
        ("u3", "f", 2, 5.0),  # a single interaction
        ("u4", "a", 1, 5.0), ("u4", "a", 3, 5.0),  # last repeats a consumed item
        ("u5", "g", 1, None), ("u5", "h", 2, None),  # implicit events are positives
        ("u6", "y", 5, 4.0), ("u6", "x", 5, 4.0),  # same second: the later row is last
    ])


def test_leave_last_out_targets_only_eligible_users(replay: Dataset) -> None:
    split = leave_last_out(replay)
    assert split.protocol == "leave-last-out"
    assert split.targets == {"u1": ["c"], "u5": ["h"], "u6": ["x"]}
    assert split.cutoff == {"u1": 3, "u5": 2, "u6": 5}


def test_leave_last_out_trains_on_everything_but_the_targets(replay: Dataset) -> None:
    split = leave_last_out(replay)
    held_out = {("u1", "c"), ("u5", "h"), ("u6", "x")}
    expected = [(i.user, i.item, i.ts) for i in replay.interactions
                if (i.user, i.item) not in held_out]
    assert _events(split) == expected
    assert [i.item for i in split.history["u1"]] == ["a", "b"]  # the negative stays
    assert [i.item for i in split.history["u2"]] == ["d", "e"]  # non-test users train fully
    assert [i.item for i in split.history["u6"]] == ["y"]


def test_leave_last_out_threshold_decides_positives(replay: Dataset) -> None:
    split = leave_last_out(replay, positive_threshold=5.5)
    assert split.targets == {"u5": ["h"]}
    assert ("u1", "c", 3) in _events(split)


def test_leave_last_out_orders_by_time_then_row_not_by_list_order() -> None:
    ordered = make_dataset([("u", "p", 1, 5.0), ("u", "q", 9, 5.0), ("u", "r", 9, 5.0)])
    shuffled = Dataset(name="x", items=ordered.items,
                       interactions=list(reversed(ordered.interactions)))
    assert leave_last_out(shuffled).targets == {"u": ["r"]}


def test_global_time_split_targets_new_positives_after_one_cut() -> None:
    dataset = make_dataset([
        ("u1", "a", 1, 4.0), ("u1", "b", 2, 1.0), ("u2", "e", 3, 5.0), ("u4", "q", 4, 5.0),
        ("u1", "z", 5, 5.0), ("u2", "f", 6, 5.0), ("u4", "r", 7, 5.0),
        # the cut: with test_fraction 0.5 of these 16 events, the 9th timestamp, 8
        ("u1", "b", 8, 5.0),  # consumed before the cut: never a target
        ("u1", "c", 8, 4.0),  # at the cut time: test period
        ("u1", "d", 9, 2.0),  # negative
        ("u1", "g", 9, 5.0), ("u1", "g", 10, 1.0),  # later disliked
        ("u1", "h", 10, 4.0),
        ("u2", "f", 9, 5.0),  # only a repeat: u2 has no targets
        ("u3", "k", 9, 5.0),  # no training history
        ("u4", "s", 10, 2.0),  # only a negative
    ])
    split = global_time_split(dataset, test_fraction=0.5)
    assert split.protocol == "global-time"
    assert max(i.ts for i in split.train) < 8
    assert len(split.train) == 7
    assert split.targets == {"u1": ["c", "h"]}
    assert split.cutoff == {"u1": 8}
    assert [i.item for i in split.history["u1"]] == ["a", "b", "z"]
    assert "u3" not in split.history


def test_global_time_split_rejects_a_degenerate_fraction(replay: Dataset) -> None:
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_fraction"):
            global_time_split(replay, test_fraction=fraction)


def _assert_no_leak(split: Split, threshold: float, ratings: dict[tuple[str, str], float]) -> None:
    for user, targets in split.targets.items():
        consumed = {i.item for i in split.history[user]}
        assert targets and not consumed & set(targets)
        assert max(i.ts for i in split.history[user]) <= split.cutoff[user]
        assert all(ratings[user, item] >= threshold for item in targets)


def test_protocols_on_real_movielens_never_leak(ml_latest: Dataset) -> None:
    ratings = {(i.user, i.item): i.rating or 0.0 for i in ml_latest.interactions}
    last_out = leave_last_out(ml_latest)
    assert 0 < len(last_out.targets) < 610
    assert len(last_out.train) + len(last_out.targets) == len(ml_latest.interactions)
    _assert_no_leak(last_out, 3.5, ratings)

    by_time = global_time_split(ml_latest, test_fraction=0.2)
    cut = min(by_time.cutoff.values())
    assert max(i.ts for i in by_time.train) < cut
    assert abs(len(by_time.train) / len(ml_latest.interactions) - 0.8) < 0.01
    _assert_no_leak(by_time, 3.5, ratings)


def _split_for_sampling() -> Split:
    train = [Interaction(user=f"u{n}", item="a", ts=n) for n in range(20)]
    return Split(protocol="p", train=train, history={i.user: [i] for i in train},
                 targets={f"u{n}": ["b"] for n in range(20)},
                 cutoff={f"u{n}": 100 for n in range(20)})


def test_sample_users_is_seeded_and_keeps_training_intact() -> None:
    split = _split_for_sampling()
    sample = sample_users(split, 5, seed=1)
    assert len(sample.targets) == 5 and set(sample.targets) <= set(split.targets)
    assert set(sample.cutoff) == set(sample.targets)
    assert sample.train == split.train and sample.history == split.history
    assert sample_users(split, 5, seed=1).targets == sample.targets
    others = {frozenset(sample_users(split, 5, seed=s).targets) for s in range(2, 8)}
    assert len(others | {frozenset(sample.targets)}) > 1
    assert sample_users(split, 50, seed=1).targets == split.targets
    with pytest.raises(ValueError):
        sample_users(split, 0, seed=1)



@pytest.mark.parametrize("split", [leave_last_out, lambda d: global_time_split(d, 0.3)],
                         ids=["leave-last-out", "global-time"])
def test_validation_split_never_sees_a_test_target(
        ml_latest: Dataset, split: Callable[[Dataset], Split]) -> None:
    """Tuning on the validation split cannot fit the test targets: it learns from part
    of the test split's training data and its targets are other items, earlier."""
    test = split(ml_latest)
    val = validation_split(ml_latest, split)
    assert val.protocol == test.protocol + "-validation"
    test_train = Counter((e.user, e.item, e.ts, e.seq) for e in test.train)
    val_train = Counter((e.user, e.item, e.ts, e.seq) for e in val.train)
    assert not val_train - test_train and sum(val_train.values()) < sum(test_train.values())
    assert len(val.targets) >= 20  # ml-latest-small: 311 (leave-last-out), 28 (global)
    for user, items in val.targets.items():
        assert not set(items) & set(test.targets.get(user, []))
        if user in test.cutoff:
            assert val.cutoff[user] <= test.cutoff[user]
    again = validation_split(ml_latest, split)
    assert (again.targets, again.cutoff) == (val.targets, val.cutoff)


def test_validation_split_under_leave_last_out_holds_out_the_previous_positive() -> None:
    data = make_dataset([
        ("v1", "a", 1, 4.0), ("v1", "b", 2, 5.0), ("v1", "c", 3, 5.0),  # test c, val b
        ("v2", "a", 1, 4.0), ("v2", "b", 2, 1.0), ("v2", "c", 3, 5.0),  # b negative
        ("v3", "a", 1, 5.0), ("v3", "d", 2, 1.0),  # no test target: val holds out nothing
    ])
    val = validation_split(data, leave_last_out)
    assert val.targets == {"v1": ["b"]} and val.cutoff == {"v1": 2}
    assert [(e.user, e.item) for e in val.train] == [
        ("v1", "a"), ("v2", "a"), ("v3", "a"), ("v2", "b"), ("v3", "d")]
