"""EASE and SASRec baselines on tiny worlds with a planted pattern each should find."""

from __future__ import annotations

import random

import numpy as np

from evals.baselines import BASELINES, EASE, SASRecRecommender
from evals.types import Interaction, ItemInfo

CYCLE = ["a", "b", "c", "d", "e", "f"]
SPACE = [f"s{n}" for n in range(6)]
KITCHEN = [f"k{n}" for n in range(6)]


def catalog(ids: list[str]) -> dict[str, ItemInfo]:
    return {i: ItemInfo(item_id=i, title=f"Item {i}") for i in ids}


def cycle_train(users: int = 30, length: int = 12) -> list[Interaction]:
    rng = random.Random(0)
    out: list[Interaction] = []
    for u in range(users):
        start = rng.randrange(len(CYCLE))
        for step in range(length):
            out.append(Interaction(user=f"u{u}", item=CYCLE[(start + step) % len(CYCLE)],
                                   ts=1000 * u + step, rating=4.0, seq=len(out)))
    return out


def cluster_train(users: int = 40) -> list[Interaction]:
    rng = random.Random(1)
    out: list[Interaction] = []
    for u in range(users):
        own = list(SPACE if u % 2 == 0 else KITCHEN)
        rng.shuffle(own)
        for step, item in enumerate(own[:4]):
            out.append(Interaction(user=f"u{u}", item=item, ts=100 * u + step, rating=5.0,
                                   seq=len(out)))
        # A low rating of the other cluster: not a positive, so no evidence for it.
        other = (KITCHEN if u % 2 == 0 else SPACE)[u % 6]
        out.append(Interaction(user=f"u{u}", item=other, ts=100 * u + 9, rating=1.0,
                               seq=len(out)))
    return out


def test_both_are_registered_by_name() -> None:
    assert BASELINES["ease"] is EASE and BASELINES["sasrec"] is SASRecRecommender
    assert EASE().name == "ease" and SASRecRecommender().name == "sasrec"


def test_ease_recommends_the_users_cluster_and_never_what_they_rated_low() -> None:
    train = cluster_train()
    model = EASE(regularization=10.0)
    model.fit(train, catalog(SPACE + KITCHEN))
    history = [x for x in train if x.user == "u0"]
    seen = {x.item for x in history}
    top = model.recommend("u0", history, 2, seen)
    assert set(top) <= set(SPACE) - seen and len(top) == 2
    # A kitchen fan who has not seen every kitchen item gets kitchen items first.
    fan = [Interaction(user="new", item="k0", ts=0, rating=5.0),
           Interaction(user="new", item="k1", ts=1, rating=5.0)]
    assert set(model.recommend("new", fan, 4, {"k0", "k1"})) == set(KITCHEN) - {"k0", "k1"}


def test_ease_solves_only_over_the_most_popular_items_when_capped() -> None:
    train = cluster_train()
    model = EASE(regularization=10.0, max_items=3)
    model.fit(train, catalog(SPACE + KITCHEN + ["never-seen"]))
    history = [x for x in train if x.user == "u0"]
    top = model.recommend("u0", history, 5, set())
    assert len(top) == 5 and len(set(top)) == 5
    assert model._weights.shape == (3, 3)
    assert np.allclose(np.diag(model._weights), 0.0)


def test_sasrec_learns_the_cycle_well_above_chance() -> None:
    train = cycle_train()
    model = SASRecRecommender(seconds=30, max_epochs=60)
    model.fit(train, catalog(CYCLE + ["z"]))
    right = 0
    for n in range(len(CYCLE)):
        history = [Interaction(user="t", item=CYCLE[(n + s) % 6], ts=s) for s in range(4)]
        right += model.recommend("t", history, 1, set()) == [CYCLE[(n + 4) % 6]]
    assert right >= 5  # chance is 1 in 7
    # Unknown items only: the popularity fill, still k distinct items.
    unknown = [Interaction(user="t", item="never", ts=0)]
    assert len(set(model.recommend("t", unknown, 3, {"a"}) + ["a"])) == 4
