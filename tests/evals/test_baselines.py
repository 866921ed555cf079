"""Baselines on tiny worlds with planted patterns each one should find.

Splits are built here by leave-last-out by hand, so these tests do not depend on
evals/protocol.py. Each model must beat the random ranking on the pattern it is
designed to catch, and every model must obey the ranking contract.
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from evals.baselines import (
    BASELINES,
    GRURecommender,
    ItemKNN,
    Markov,
    MeanEmbedding,
    MostPopular,
    RandomRecommender,
    RecentPopular,
    TfidfContent,
)
from evals.baselines.gru import _windows
from evals.types import Interaction, ItemInfo, Recommender, Split

DAY = 86_400

SPACE = ["Starship Odyssey", "Mars Colony Rescue", "Galaxy Pirates", "Alien Moon Base",
         "Comet Hunters", "Rings of Saturn", "Astronaut Diaries", "Rocket to Andromeda",
         "Nebula Wars", "Orbital Station Zero", "Black Hole Expedition", "Cosmic Voyager"]
KITCHEN = ["The Pasta Kitchen", "Bread and Butter Bakery", "Chef's Table Secrets",
           "Sushi Masterclass", "Grandma's Soup Recipes", "The Chocolate Cake Contest",
           "Spice Market Cooking", "Barbecue Weekend", "Vegan Dinner Party",
           "Pizza Oven Stories", "Dumpling House", "Breakfast Pancake Diner"]


class World:
    """A leave-last-out split over hand-made events, and the catalog they come from."""

    def __init__(self, events: list[Interaction], items: dict[str, ItemInfo]) -> None:
        by_user: dict[str, list[Interaction]] = defaultdict(list)
        for x in sorted(events, key=lambda x: (x.ts, x.seq)):
            by_user[x.user].append(x)
        history = {user: seq[:-1] for user, seq in by_user.items()}
        self.items = items
        self.split = Split(
            protocol="leave-last-out",
            train=sorted((x for seq in history.values() for x in seq), key=lambda x: (x.ts, x.seq)),
            history=history,
            targets={user: [seq[-1].item] for user, seq in by_user.items()},
        )

    def fitted(self, factory: Callable[[], Recommender]) -> Recommender:
        model = factory()
        model.fit(self.split.train, self.items)
        return model

    def recommend_all(self, model: Recommender, k: int) -> dict[str, list[str]]:
        """Each user's list with their history excluded, as the protocol asks."""
        return {user: model.recommend(user, h, k, {x.item for x in h})
                for user, h in self.split.history.items()}

    def hit_rate(self, model: Recommender, k: int, users: Sequence[str] | None = None) -> float:
        lists = self.recommend_all(model, k)
        chosen = users if users is not None else sorted(lists)
        return sum(self.split.targets[u][0] in lists[u] for u in chosen) / len(chosen)

    def random_hit_rate(self, k: int) -> float:
        """Averaged over seeds: one random run is too noisy to compare against."""
        return float(np.mean([self.hit_rate(self.fitted(partial(RandomRecommender, s)), k)
                              for s in range(5)]))


def _events(sequences: dict[str, list[tuple[str, int]]]) -> list[Interaction]:
    """Interactions from per-user (item, ts) lists; ratings vary so weighting is exercised."""
    return [Interaction(user, item, ts, rating=float(3 + n % 3), seq=n)
            for n, (user, item, ts) in enumerate(
                (user, item, ts) for user, seq in sorted(sequences.items()) for item, ts in seq)]


def cluster_world(titles_only: bool = False) -> World:
    """Two clusters, space films and cooking shows; every user sticks to one cluster."""
    rng = random.Random(7)
    items: dict[str, ItemInfo] = {}
    for prefix, titles, genre in (("s", SPACE, "Science fiction"), ("k", KITCHEN, "Cooking")):
        for j, title in enumerate(titles):
            items[f"{prefix}{j:02d}"] = ItemInfo(
                f"{prefix}{j:02d}", title, () if titles_only else (genre,))
    sequences = {}
    for u in range(40):
        pool = [i for i in items if i.startswith("sk"[u % 2])]
        sequences[f"u{u:02d}"] = [(item, u * DAY + n * 60) for n, item in
                                  enumerate(rng.sample(pool, 7))]
    return World(_events(sequences), items)


def cycle_world(length: int = 20, users: int = 40, steps: int = 8) -> World:
    """Items visited in one fixed cycle; each user walks a stretch of it from a random start."""
    rng = random.Random(3)
    cycle = [f"c{j:02d}" for j in range(length)]
    sequences = {f"u{u:02d}": [(cycle[(start + n) % length], u * DAY + n * 60)
                               for n in range(steps)]
                 for u, start in enumerate(rng.randrange(length) for _ in range(users))}
    return World(_events(sequences), {i: ItemInfo(i, f"Episode {i}") for i in cycle})


def popularity_world() -> World:
    """Skewed popularity whose hits flip between an early era (40 users) and a late one (20)."""
    rng = random.Random(11)
    catalog = [f"p{j:02d}" for j in range(40)]
    weights = [1 / (rank + 1) ** 2 for rank in range(len(catalog))]
    sequences = {}
    for u in range(60):
        late = u >= 40
        ranked = catalog[::-1] if late else catalog
        start = ((400 if late else 0) + rng.randrange(60)) * DAY
        chosen: list[str] = []
        while len(chosen) < 6:
            item = rng.choices(ranked, weights)[0]
            if item not in chosen:
                chosen.append(item)
        sequences[f"{'late' if late else 'early'}{u:02d}"] = [
            (item, start + n * DAY) for n, item in enumerate(chosen)]
    return World(_events(sequences), {i: ItemInfo(i, f"Film {i}") for i in catalog})


class BagOfWords:
    """A deterministic stand-in embedder: hashed word counts, unit length."""

    name = "bag-of-words"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.batches.append(len(texts))
        rows = []
        for text in texts:
            row = np.zeros(64)
            for word in text.lower().replace(".", " ").replace(",", " ").split():
                row[zlib.crc32(word.encode()) % 64] += 1
            rows.append((row / np.linalg.norm(row)).tolist())
        return rows


def small_gru() -> GRURecommender:
    return GRURecommender(epochs=15, hidden=32, batch_size=8, learning_rate=1e-2)


# The models to run on the hand-made worlds: the registry's, with a fake embedder
# and a GRU sized for forty users instead of MovieLens.
FACTORIES: dict[str, Callable[[], Recommender]] = {
    **BASELINES,
    "mean-embedding": lambda: MeanEmbedding(embedder=BagOfWords()),
    "gru": small_gru,
}


def test_registry_names_every_baseline_of_the_design_and_builds_unfitted_models() -> None:
    assert list(BASELINES) == ["random", "most-popular", "recent-popular", "item-knn", "markov",
                               "tfidf", "mean-embedding", "gru", "ease", "sasrec"]
    for name, factory in BASELINES.items():
        model = factory()
        assert model.name == name
        with pytest.raises(RuntimeError, match="fit"):
            model.recommend("u", [], 5, set())


@pytest.mark.parametrize(("name", "world", "k", "margin"), [
    ("most-popular", popularity_world, 5, 0.15),
    ("recent-popular", popularity_world, 5, 0.3),
    ("item-knn", cluster_world, 5, 0.3),
    ("markov", cycle_world, 1, 0.7),
    ("tfidf", cluster_world, 5, 0.3),
    ("mean-embedding", cluster_world, 5, 0.3),
    ("gru", cycle_world, 1, 0.7),
])
def test_each_baseline_beats_random_on_its_pattern(
        name: str, world: Callable[[], World], k: int, margin: float) -> None:
    w = world()
    assert w.hit_rate(w.fitted(FACTORIES[name]), k) >= w.random_hit_rate(k) + margin


def test_recent_popularity_follows_the_users_own_era() -> None:
    w = popularity_world()
    late = [u for u in w.split.history if u.startswith("late")]
    recent, alltime = w.fitted(RecentPopular), w.fitted(MostPopular)
    assert w.hit_rate(recent, 5, late) >= w.hit_rate(alltime, 5, late) + 0.3
    # Anchored at the end of train instead, every user gets the same list.
    train_end = w.fitted(lambda: RecentPopular(anchor="train-end"))
    assert len({tuple(train_end.recommend(u, w.split.history[u], 5, set()))
                for u in w.split.history}) == 1


@pytest.mark.slow
def test_real_embedder_finds_topics_that_share_no_words() -> None:
    """Titles only: TF-IDF has no word overlap to go on, the sentence model still groups them."""
    w = cluster_world(titles_only=True)
    embedding = w.fitted(lambda: MeanEmbedding(batch_size=10))
    assert w.hit_rate(embedding, 5) >= w.random_hit_rate(5) + 0.3
    assert w.hit_rate(embedding, 5) >= w.hit_rate(w.fitted(TfidfContent), 5) + 0.2


@pytest.mark.parametrize("name", list(FACTORIES))
def test_lists_respect_exclusions_and_length(name: str) -> None:
    w = cluster_world()
    model = w.fitted(FACTORIES[name])
    rng = random.Random(5)
    for user, history in w.split.history.items():
        exclude = {x.item for x in history} | set(rng.sample(sorted(w.items), 5)) | {"unknown"}
        recs = model.recommend(user, history, 10, exclude)
        assert len(recs) == len(set(recs)) == 10
        assert not exclude & set(recs)
    history = w.split.history["u00"]
    left = ["k03", "s05", "s07"]
    everything_else = set(w.items) - set(left)
    assert sorted(model.recommend("u00", history, 10, everything_else)) == left
    assert model.recommend("u00", history, 0, set()) == []


@pytest.mark.parametrize("name", list(FACTORIES))
def test_two_runs_give_identical_lists(name: str) -> None:
    w = cycle_world() if name == "gru" else cluster_world()
    first = w.recommend_all(w.fitted(FACTORIES[name]), 5)
    # Other code in the process moves the global generators; a model must not care.
    torch.rand(7)
    np.random.random()
    random.random()
    assert w.recommend_all(w.fitted(FACTORIES[name]), 5) == first


def test_random_depends_on_seed_not_on_the_order_users_are_asked() -> None:
    w = cluster_world()
    model = w.fitted(RandomRecommender)
    forward = w.recommend_all(model, 5)
    backward = {u: model.recommend(u, h, 5, {x.item for x in h})
                for u, h in reversed(w.split.history.items())}
    assert forward == backward
    assert w.recommend_all(w.fitted(lambda: RandomRecommender(seed=1)), 5) != forward


def test_ties_break_by_item_id_and_unscored_items_fill_by_popularity() -> None:
    events = _events({"u1": [("b", 1), ("c", 2)], "u2": [("a", 3), ("d", 4)],
                      "u3": [("d", 5), ("e", 6)]})
    items = {i: ItemInfo(i, i) for i in "abcdef"}
    popular = MostPopular()
    popular.fit(events, items)
    assert popular.recommend("x", [], 6, set()) == ["d", "a", "b", "c", "e", "f"]
    # Enough ties that an unstable sort would shuffle them: counts 1, 2, 3 by j % 3.
    many = [Interaction("u", f"i{j:03d}", j) for j in range(150) for _ in range(1 + j % 3)]
    popular.fit(many[::-1], {})
    ranked = popular.recommend("x", [], 60, {"i005"})
    assert ranked == sorted(ranked, key=lambda i: (-(int(i[1:]) % 3), i))
    assert ranked[:3] == ["i002", "i008", "i011"]
    markov = Markov()
    markov.fit(events, items)
    after_a = markov.recommend("x", [events[2]], 4, {"a"})  # history ends with "a"
    assert after_a == ["d", "b", "c", "e"]


def test_item_knn_scores_by_co_occurrence_within_the_neighbourhood() -> None:
    # "a" co-occurs with "b" for three users and with "c" for one; "d" is the most popular.
    baskets = {"u1": "ab", "u2": "ab", "u3": "ab", "u4": "ac", "u5": "cd", "u6": "d", "u7": "d",
               "u8": "d"}
    events = _events({u: [(i, n) for n, i in enumerate(items)] for u, items in baskets.items()})
    items = {i: ItemInfo(i, i) for i in "abcd"}
    wide, narrow = ItemKNN(), ItemKNN(neighbours=1)
    for model in (wide, narrow):
        model.fit(events, items)
    history = [Interaction("x", "a", 0)]
    assert wide.recommend("x", history, 3, {"a"}) == ["b", "c", "d"]
    assert wide.recommend("x", history, 1, {"a", "b"}) == ["c"]
    # With one neighbour "a" only knows "b"; the rest comes by popularity.
    assert narrow.recommend("x", history, 3, {"a"}) == ["b", "d", "c"]
    assert narrow.recommend("x", history, 1, {"a", "b"}) == ["d"]


def test_gru_learns_a_deterministic_cycle_and_leaves_torch_as_it_found_it() -> None:
    w = cycle_world()
    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    model = small_gru()
    model.fit(w.split.train, w.items)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert model.losses[-1] < model.losses[0] / 4
    cycle = sorted(w.items)
    for j in range(len(cycle)):
        history = [Interaction("x", cycle[(j - n) % len(cycle)], -n) for n in range(4)][::-1]
        assert model.recommend("x", history, 1, set()) == [cycle[(j + 1) % len(cycle)]]


def test_tfidf_profile_leans_towards_what_the_user_rated_highly() -> None:
    w = cluster_world()
    model = w.fitted(TfidfContent)
    for loved, cluster in (("s00", "s"), ("k00", "k")):
        history = [Interaction("x", item, n, rating=5.0 if item == loved else 0.5)
                   for n, item in enumerate(["k00", "s00"])]
        recs = model.recommend("x", history, 3, {"k00", "s00"})
        assert all(item.startswith(cluster) for item in recs), (loved, recs)


def test_gru_windows_cover_every_transition_once_from_the_most_recent() -> None:
    assert _windows([1, 2, 3, 4, 5, 6, 7], 3, 10) == [[5, 6, 7], [3, 4, 5], [1, 2, 3]]
    assert _windows([1, 2, 3, 4, 5, 6, 7], 3, 1) == [[5, 6, 7]]
    assert _windows([1, 2], 51, 1) == [[1, 2]]
    assert _windows([1], 51, 1) == []


def test_mean_embedding_embeds_in_batches_once_and_reuses_the_disk_cache(tmp_path: Path) -> None:
    w = cluster_world()
    embedder = BagOfWords()
    model = MeanEmbedding(embedder=embedder, batch_size=10, cache_dir=tmp_path)
    model.fit(w.split.train, w.items)
    assert embedder.batches == [10, 10, 4]
    model.fit(w.split.train, w.items)
    assert embedder.batches == [10, 10, 4]  # refit: nothing new to embed
    again = BagOfWords()
    w.fitted(lambda: MeanEmbedding(embedder=again, cache_dir=tmp_path))
    assert again.batches == []
    assert len(list(tmp_path.glob("*.npy"))) == 1
