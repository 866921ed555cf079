"""The learned ranker on a synthetic tenant with a planted signal, its artifact on disk,
and its refusals (too little data, a feature-list mismatch)."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from service.catalog.models import Item
from service.catalog.service import count_tags
from service.profiles.merge import DecayRules
from service.summaries.grouping import TagWeights, tag_weights, unseen_tag_weight
from service.training.contract import (
    CandidateSource,
    FacetSignal,
    InteractionLog,
    SourceHit,
    UserEvent,
)
from service.training.data import POSITIVE, log_from_rows
from service.training.features import COLUMN, FEATURE_NAMES, PROFILE_COLUMNS
from service.training.pseudo_facets import GroupingInputs, facet_hits, grouped_facets
from service.training.ranker import (
    FeatureVersionMismatch,
    LearnedRanker,
    Sample,
    _training_arrays,
    choose_profile_columns,
    train_ranker,
)

ITEMS = [f"i{n}" for n in range(300)]
DAY = 86400.0
# The world's rule: users walk one long, fixed cycle through the catalog.
CYCLE = random.Random(42).sample(ITEMS, len(ITEMS))
NEXT = {item: CYCLE[(n + 1) % len(CYCLE)] for n, item in enumerate(CYCLE)}


def successor(item_id: str) -> str:
    """After an item, users go on to this one."""
    return NEXT[item_id]


def world(users: int, events: int = 8, seed: int = 0) -> InteractionLog:
    rng = random.Random(seed)
    rows = []
    for u in range(users):
        item = rng.choice(ITEMS)
        start = rng.uniform(0, 30) * DAY
        for n in range(events):
            rows.append((f"u{u}", item, start + n * DAY, 1.0, f"u{u}-e{n}"))
            item = successor(item)
    return log_from_rows(rows)


class NoisySources:
    """Two sources that each know the rule but bury it among their own distractors, with
    unrelated scores: alone each ranks the true next item at random; they share only it."""

    def __init__(self, log: InteractionLog) -> None:
        self.fitted_on = len(log)

    def candidates(self, history: list[UserEvent], n: int, exclude: set[str],
                   now: float) -> dict[CandidateSource, dict[str, SourceHit]]:
        rng = random.Random(f"{history[-1].event_id}@{now}")
        out: dict[CandidateSource, dict[str, SourceHit]] = {}
        truth = successor(history[-1].item_id)
        pool = [i for i in ITEMS if i not in exclude and i != truth]
        sources: tuple[CandidateSource, ...] = ("cooccurrence", "content")
        for half, source in enumerate(sources):
            found = rng.sample(pool[half::2], 30) + ([truth] if truth not in exclude else [])
            scores = sorted((rng.random() for _ in found), reverse=True)
            rng.shuffle(found)
            out[source] = {i: SourceHit(s, r, via=len(history) - 1)
                           for r, (i, s) in enumerate(zip(found, scores, strict=True))}
        return out

    def popularity(self, item_ids: list[str], now: float) -> tuple[np.ndarray, np.ndarray]:
        zeros = np.zeros(len(item_ids), dtype=np.float32)
        return zeros, zeros

    def cooccurrence_means(self, groups: Sequence[Sequence[str]], columns: Sequence[str]
                           ) -> np.ndarray:
        return np.zeros((len(groups), len(columns)))  # no neighbours known

@pytest.mark.slow  # trains the LightGBM ranker: tens of seconds on busy cores
def test_the_ranker_learns_a_planted_signal_and_beats_each_single_source() -> None:
    fitted: list[int] = []

    def fit(log: InteractionLog) -> NoisySources:
        fitted.append(len(log))
        return NoisySources(log)

    log = world(300, events=12)
    ranker, metrics, notes = train_ranker(log, fit, {}, seed=1)
    assert ranker is not None
    # The base models never saw the held-out tails: each user's last three events, each
    # one query (twelve events are history enough to spare three).
    assert fitted == [len(log) - 3 * 300]
    assert metrics["ranker.validation_users"] == 60
    assert metrics["ranker.validation_samples"] == 3 * 60
    assert metrics["ranker.training_samples"] == 3 * 240
    assert metrics["ranker.ndcg@10"] > 0.9 > metrics["ranker.best_source.ndcg@10"] + 0.3
    assert metrics["ranker.hr@10"] > metrics["ranker.baseline.cooccurrence.hr@10"]
    assert notes == []
    assert "ranker.profile_columns" not in metrics and ranker.profile_columns  # no choice
    # Asked to choose, with no item vectors (no profile in the rows): the one without it.
    chosen, chosen_metrics, _ = train_ranker(log, fit, {}, seed=1, choose_profile=True)
    assert chosen is not None and not chosen.profile_columns
    assert chosen_metrics["ranker.profile_columns"] == 0.0
    assert chosen_metrics["ranker.ndcg@10"] == metrics["ranker.ndcg@10"]  # the same trees


def test_a_ranker_that_cannot_win_says_so() -> None:
    class OneSource(NoisySources):
        def candidates(self, history: list[UserEvent], n: int, exclude: set[str],
                       now: float) -> dict[CandidateSource, dict[str, SourceHit]]:
            # The truth always first: nothing left for a ranker to add.
            truth = successor(history[-1].item_id)
            others = [i for i in ITEMS[:40] if i not in exclude and i != truth]
            return {"transition": {i: SourceHit(1.0 / (r + 1), r)
                                   for r, i in enumerate([truth, *others])}}

    ranker, metrics, notes = train_ranker(world(120), OneSource, {}, seed=0)
    assert ranker is not None and metrics["ranker.baseline.transition.ndcg@10"] == 1.0
    assert len(notes) == 1 and "did not beat the best single source (transition)" in notes[0]


def test_too_little_data_gives_no_ranker() -> None:
    assert train_ranker(world(10), NoisySources, {}) == (
        None, {}, ["too little data for a ranker"])
    assert train_ranker(world(100, events=3), NoisySources, {})[0] is None  # short histories


class OneNoisySource(NoisySources):
    """Popularity that knows nothing: 40 random unused items plus the user's next one."""

    def __init__(self, log: InteractionLog) -> None:
        self.truth = {log.event_ids[r]: log.item_ids[int(log.items[r])]
                      for r in range(len(log))}

    def candidates(self, history: list[UserEvent], n: int, exclude: set[str],
                   now: float) -> dict[CandidateSource, dict[str, SourceHit]]:
        rng = random.Random(f"{history[-1].event_id}@{now}")
        found = rng.sample([i for i in ITEMS if i not in exclude], 40)
        truth = next_in_topic.get(history[-1].event_id)
        if truth is not None and truth not in exclude and truth not in found:
            found[0] = truth
        rng.shuffle(found)
        return {"popular": {i: SourceHit(rng.random(), r) for r, i in enumerate(found)}}


next_in_topic: dict[str, str] = {}


@pytest.mark.slow  # trains the LightGBM ranker: tens of seconds on busy cores
def test_pseudo_facets_let_the_ranker_find_the_users_topic() -> None:
    """Users stay within one of 3 topics, which only the item vectors reveal; the one
    source proposes the next item among random others. Only the facet features (from
    pseudo-facets over the history) can tell it apart."""
    rng = random.Random(0)
    noise = np.random.default_rng(0)
    topic_of = {i: n % 3 for n, i in enumerate(ITEMS)}
    vectors = {}
    for i in ITEMS:
        v = np.eye(8, dtype=np.float32)[topic_of[i]] + 0.05 * noise.standard_normal(8)
        vectors[i] = (v / np.linalg.norm(v)).astype(np.float32)
    rows = []
    next_in_topic.clear()
    for u in range(200):
        topic = u % 3
        walk = rng.sample([i for i in ITEMS if topic_of[i] == topic], 8)
        for n, item in enumerate(walk):
            rows.append((f"u{u}", item, n * DAY + u, 1.0, f"u{u}-e{n}"))
            if n:
                next_in_topic[f"u{u}-e{n - 1}"] = item
    log = log_from_rows(rows)
    ranker, metrics, _ = train_ranker(log, OneNoisySource, {}, item_vectors=vectors,
                                      choose_profile=True)
    assert ranker is not None
    assert metrics["ranker.ndcg@10"] > 2 * metrics["ranker.baseline.popular.ndcg@10"]
    importance = dict(zip(FEATURE_NAMES, ranker.feature_importance(), strict=True))
    assert importance["facet_best"] + importance["facet_sum"] > 0
    # The facets carry the signal here: the profile's columns are kept, beyond noise.
    assert ranker.profile_columns and metrics["ranker.profile_columns"] == 1.0
    assert metrics["ranker.profile_gain.ndcg@10"] > 2 * metrics["ranker.profile_gain.se"] > 0
    # Without vectors there is nothing to tell the topic by.
    _, blind, _ = train_ranker(log, OneNoisySource, {})
    assert blind["ranker.ndcg@10"] < metrics["ranker.ndcg@10"]
    # Pseudo-facets grouped as a profile refresh groups (the items' tags, the catalog's
    # tag weights) teach it the same.
    items = {i: Item(item_id=i, title=f"Item {i}", tags=[f"topic-{topic_of[i]}", "common"],
                     category=None, attributes={}) for i in ITEMS}
    counts, total = count_tags((item.tags, None, {}) for item in items.values())
    grouping = GroupingInputs.of(items, TagWeights(tag_weights(counts, total),
                                                unseen_tag_weight(total)))
    grouped_ranker, grouped, _ = train_ranker(log, OneNoisySource, {}, item_vectors=vectors,
                                              grouping=grouping)
    assert grouped_ranker is not None
    assert grouped["ranker.ndcg@10"] > 2 * grouped["ranker.baseline.popular.ndcg@10"]
    assert grouped["ranker.ndcg@10"] > blind["ranker.ndcg@10"]


def test_grouped_pseudo_facets_are_the_groups_a_refresh_would_make() -> None:
    """Six liked items of two tagged topics (four and two) and three disliked ones: two
    like signals with shares 2/3 and 1/3, centred on their items, and one avoid signal."""
    basis = np.eye(4, dtype=np.float32)
    vectors = {**{f"a{n}": basis[0] for n in range(4)}, **{f"b{n}": basis[1] for n in range(2)},
               **{f"x{n}": basis[2] for n in range(3)}}
    tags = {"a": ["jazz"], "b": ["hiking"], "x": ["opera"]}
    items = {i: Item(item_id=i, title=i, tags=tags[i[0]], category=None, attributes={})
             for i in vectors}
    history = [UserEvent(i, float(n) * DAY, 1.0 if i[0] != "x" else 0.0, f"e{n}")
               for n, i in enumerate(["a0", "b0", "a1", "x0", "a2", "b1", "x1", "a3", "x2"])]
    signals = grouped_facets(history, vectors, GroupingInputs.of(items, None))
    likes = [f for f in signals if not f.avoid]
    assert [round(f.strength, 4) for f in likes] == [round(4 / 6, 4), round(2 / 6, 4)]
    assert [int(np.argmax(f.centroid)) for f in likes] == [0, 1]
    assert [sorted(f.items) for f in likes] == [["a0", "a1", "a2", "a3"], ["b0", "b1"]]
    assert not any(f.long_term for f in likes)
    avoid = [f for f in signals if f.avoid]
    assert len(avoid) == 1 and int(np.argmax(avoid[0].centroid)) == 2
    assert avoid[0].strength == pytest.approx(3 / 9)


def test_grouped_pseudo_facets_keep_what_the_profile_merge_keeps() -> None:
    """A refresh's merge starts each new facet at eta x its group's share and archives it
    below the floor, and keeps a facet's newest `max_evidence` events: pseudo-facets do
    the same, so a one-event group among 30 is no facet and a centroid follows the
    newest evidence only."""
    basis = np.eye(4, dtype=np.float32)
    # 'a' items: the first 10 point along axis 0, the newest 19 along axis 3 (same tag).
    vectors = {**{f"a{n}": basis[0] if n < 10 else basis[3] for n in range(29)},
               "b0": basis[1], "b1": basis[1]}
    tags = {"a": ["jazz"], "b": ["hiking"]}
    items = {i: Item(item_id=i, title=i, tags=tags[i[0]], category=None, attributes={})
             for i in vectors}
    order = [f"a{n}" for n in range(15)] + ["b0", "b1"] + [f"a{n}" for n in range(15, 29)]
    history = [UserEvent(i, float(n) * DAY, 1.0, f"e{n}") for n, i in enumerate(order)]
    rules = DecayRules(max_evidence=5, archive_below=0.1)
    signals = grouped_facets(history, vectors, GroupingInputs.of(items, None, rules=rules))
    # The hiking pair: 0.5 x sqrt(support 2/5 x share 2/31) = 0.08 < 0.1, archived at once.
    assert all(float(f.centroid @ basis[1]) < 0.5 for f in signals)
    # What is left centres on the newest five events' items (axis 3), not the first ten.
    assert [int(np.argmax(f.centroid)) for f in signals] == [3]
    assert signals[0].strength == pytest.approx(1.0)
    # With a floor of 0, the hiking pair is a facet of its own.
    everything = grouped_facets(history, vectors, GroupingInputs.of(
        items, None, rules=DecayRules(max_evidence=5, archive_below=0.0)))
    assert sorted(int(np.argmax(f.centroid)) for f in everything) == [1, 3]


def test_grouped_pseudo_facets_weigh_events_as_the_stored_ones_a_refresh_reads() -> None:
    """A refresh sees views and ratings, not liked/disliked: four views back their facet
    half as much as four top ratings do, and a lukewarm rating backs none."""
    basis = np.eye(4, dtype=np.float32)
    vectors = {**{f"a{n}": basis[0] for n in range(4)}, **{f"b{n}": basis[1] for n in range(4)},
               **{f"c{n}": basis[2] for n in range(4)}}
    tags = {"a": ["jazz"], "b": ["hiking"], "c": ["opera"]}
    items = {i: Item(item_id=i, title=i, tags=tags[i[0]], category=None, attributes={})
             for i in vectors}
    weight = {"a": POSITIVE, "b": 1.0, "c": 0.25}  # views, top ratings, lukewarm ratings
    order = [f"{k}{n}" for n in range(4) for k in "abc"]
    history = [UserEvent(i, float(n) * DAY, weight[i[0]], f"e{n}") for n, i in enumerate(order)]
    signals = grouped_facets(history, vectors, GroupingInputs.of(items, None))
    by_axis = {int(np.argmax(f.centroid)): f.strength for f in signals if not f.avoid}
    assert set(by_axis) == {0, 1}  # the lukewarm group makes no like-facet
    assert by_axis[1] > 1.3 * by_axis[0]


def test_the_pseudo_avoid_signal_is_one_a_refresh_would_keep() -> None:
    """Two low ratings among thirty events form an avoid group too weak for the merge to
    keep: serving would have no avoid-facet, so training has no avoid signal either."""
    basis = np.eye(4, dtype=np.float32)
    vectors = {**{f"a{n}": basis[0] for n in range(28)}, "x0": basis[2], "x1": basis[2]}
    items = {i: Item(item_id=i, title=i, tags=["opera" if i[0] == "x" else "jazz"],
                     category=None, attributes={}) for i in vectors}
    order = [f"a{n}" for n in range(14)] + ["x0", "x1"] + [f"a{n}" for n in range(14, 28)]
    history = [UserEvent(i, float(n) * DAY, 0.0 if i[0] == "x" else 1.0, f"e{n}")
               for n, i in enumerate(order)]
    rules = DecayRules(archive_below=0.1)
    assert not [f for f in grouped_facets(history, vectors, GroupingInputs.of(items, None,
                                                                           rules=rules))
                if f.avoid]
    kept = grouped_facets(history, vectors, GroupingInputs.of(
        items, None, rules=DecayRules(archive_below=0.0)))
    avoid = [f for f in kept if f.avoid]
    assert len(avoid) == 1 and int(np.argmax(avoid[0].centroid)) == 2
    assert avoid[0].strength == pytest.approx(2 / 30)


def test_facet_hits_gather_each_facets_quota_as_serving_does() -> None:
    """Each like-facet brings its share of the pool (at least the floor) of nearest
    unconsumed items, ranked together by the best strength x cosine, as hybrid lists
    gather the "facet" source from the vector store."""
    axis = np.eye(2, dtype=np.float32)
    ids = [f"x{n:02d}" for n in range(40)]
    # 20 items near each axis, nearer for higher n.
    rows = [axis[n % 2] + (0.01 * (40 - n)) * axis[1 - n % 2] for n in range(40)]
    matrix = np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)
    facets = [FacetSignal(strength=0.8, long_term=False, avoid=False, centroid=axis[0]),
              FacetSignal(strength=0.2, long_term=False, avoid=False, centroid=axis[1]),
              FacetSignal(strength=1.0, long_term=False, avoid=True, centroid=axis[1])]
    hits = facet_hits(facets, ids, matrix, pool=10, exclude={"x38"}, floor=3)
    near_0 = [i for i in hits if int(i[1:]) % 2 == 0]
    near_1 = [i for i in hits if int(i[1:]) % 2 == 1]
    assert len(near_0) == 8 and len(near_1) == 3  # quotas 8 and max(3, 2)
    assert "x38" not in hits and "x36" in hits  # the consumed one is skipped, not counted
    assert sorted(hits.values(), key=lambda h: h.rank)[0].score == pytest.approx(
        max(h.score for h in hits.values()))
    assert [h.rank for h in sorted(hits.values(), key=lambda h: -h.score)] == list(range(11))
    assert facet_hits(facets[2:], ids, matrix, pool=10, exclude=set()) == {}


def _queries(rng: np.random.Generator, users: int, truth: str) -> list[Sample]:
    """One query per user, 30 candidates of random features; the held-out item is the
    one with the highest `truth` column, give or take some noise."""
    out = []
    for u in range(users):
        rows = rng.random((30, len(FEATURE_NAMES))).astype(np.float32)
        labels = np.zeros(30, dtype=np.int32)
        labels[int(np.argmax(rows[:, COLUMN[truth]] + 0.5 * rng.random(30)))] = 1
        out.append(Sample(f"u{u}", rows, labels))
    return out


@pytest.mark.parametrize(("truth", "kept"), [("facet_best", True), ("score_cooccurrence", False)])
def test_the_profile_columns_are_kept_only_when_they_beat_the_ranker_without_them(
        truth: str, kept: bool) -> None:
    """Labels follow a profile column: the ranker keeps the profile's columns. Labels
    follow a trained source and the profile's columns are noise: the ranker without them
    is chosen, and its scores do not move whatever those columns hold. The rule is one
    standard error, so on noise it keeps the columns by chance about one draw in six:
    of five draws, at least four choose the plain ranker (each draw is seeded)."""
    chosen = []
    for draw in range(1 if kept else 5):
        rng = np.random.default_rng(draw)
        train, valid = _queries(rng, 300, truth), _queries(rng, 150, truth)
        x, y, groups = _training_arrays(train, rng)
        ranker, metrics, notes = choose_profile_columns(x, y, groups, x[:50], valid, seed=0)
        use = ranker.profile_columns
        chosen.append(use)
        assert metrics["ranker.profile_columns"] == float(use)
        assert (metrics["ranker.profile_gain.ndcg@10"] > metrics["ranker.profile_gain.se"]) is use
        assert bool(notes) is not use
        assert ranker.version.endswith("/without-profile") is not use
        rows = valid[0].features
        shuffled = rows.copy()
        for name in PROFILE_COLUMNS:
            shuffled[:, COLUMN[name]] = rng.random(len(rows))
        moved = not np.array_equal(ranker.score(rows), ranker.score(shuffled))
        assert moved is use
    assert chosen == [True] if kept else chosen.count(False) >= 4


def test_save_and_load_round_trip_and_a_feature_mismatch_is_refused(tmp_path: Path) -> None:
    ranker, _, _ = train_ranker(world(200), NoisySources, {}, seed=3)
    assert ranker is not None
    rows = np.random.default_rng(0).random((50, len(FEATURE_NAMES))).astype(np.float32)
    ranker.save(tmp_path / "ranker")
    loaded = LearnedRanker.load(tmp_path / "ranker")
    assert np.allclose(loaded.score(rows), ranker.score(rows))
    assert loaded.version == ranker.version
    assert loaded.profile_columns is ranker.profile_columns is True
    plain, _, _ = train_ranker(world(200), NoisySources, {}, seed=3, choose_profile=True)
    assert plain is not None and not plain.profile_columns  # no vectors: nothing to weigh
    plain.save(tmp_path / "plain")
    reloaded = LearnedRanker.load(tmp_path / "plain")
    assert not reloaded.profile_columns and reloaded.version == plain.version
    assert reloaded.version.endswith("/without-profile")

    meta_path = tmp_path / "ranker" / "ranker.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "feature_version": "f0"}))
    with pytest.raises(FeatureVersionMismatch, match="'f0'.*retrain"):
        LearnedRanker.load(tmp_path / "ranker")


@pytest.mark.slow  # starts two Python processes that import torch
def test_samples_built_in_worker_processes_are_the_ones_built_in_place(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The real base models, item vectors and grouping inputs go to two spawned
    processes; the samples come back in user order, exactly as one process builds them
    (with one torch/BLAS thread here too, as in each worker, so even the floats agree)."""
    import torch
    from threadpoolctl import threadpool_limits

    from service.training import ranker as ranker_module
    from service.training.data import split_last_positives, subset
    from service.training.models import fit_base_models

    log = world(60, events=10)
    texts = {i: f"item {i} topic {n % 5}" for n, i in enumerate(ITEMS)}
    noise = np.random.default_rng(1)
    vectors = {i: (v / np.linalg.norm(v)).astype(np.float32)
               for i in ITEMS if (v := noise.standard_normal(16)) is not None}
    items = {i: Item(item_id=i, title=f"Item {i}", tags=[f"topic-{n % 5}"], category=None,
                     attributes={}) for n, i in enumerate(ITEMS)}
    grouping = GroupingInputs.of(items, None)
    keep, held = split_last_positives(log, 0, 3)
    models = fit_base_models(subset(log, keep), texts, sequence_epochs=1)
    monkeypatch.setattr(ranker_module, "PARALLEL_MIN_QUERIES", 1)
    monkeypatch.setattr(ranker_module, "USERS_PER_TASK", 7)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with threadpool_limits(1), caplog.at_level("WARNING"):
            alone = ranker_module.build_samples(log, models, held, vectors, 0,
                                                grouping=grouping, workers=1)
            side_by_side = ranker_module.build_samples(log, models, held, vectors, 0,
                                                       grouping=grouping, workers=2)
    finally:
        torch.set_num_threads(threads)
    assert caplog.records == []  # no fallback to one process
    assert len(alone) == sum(len(q) for q in held.values()) > 100
    assert [s.user for s in side_by_side] == [s.user for s in alone]
    for a, b in zip(alone, side_by_side, strict=True):
        assert np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.features, b.features)
    assert any(s.labels.any() for s in alone) and any(s.features[:, 0].any() for s in alone)


def test_samples_fall_back_to_one_process_when_the_models_cannot_travel(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Models a spawned process cannot receive (a class local to this test) are built
    from in place, with a warning that says why, not a failed training."""
    from service.training import ranker as ranker_module
    from service.training.data import split_last_positives

    class LocalSources(NoisySources):
        pass

    log = world(30)
    _, held = split_last_positives(log, 0, 3)
    monkeypatch.setattr(ranker_module, "PARALLEL_MIN_QUERIES", 1)
    with caplog.at_level("WARNING"):
        samples = ranker_module.build_samples(log, LocalSources(log), held, None, 0,
                                              workers=2)
    assert [r.getMessage() for r in caplog.records][0].startswith(
        "building the ranker's samples in one process: 2 worker processes failed")
    again = ranker_module.build_samples(log, LocalSources(log), held, None, 0, workers=1)
    assert [s.user for s in samples] == [s.user for s in again]
    assert len(samples) == sum(len(q) for q in held.values()) > 0
    assert all(np.array_equal(a.features, b.features) for a, b in zip(samples, again,
                                                                      strict=True))


def _trained(tmp_path: Path) -> tuple[LearnedRanker, np.ndarray]:
    ranker, _, _ = train_ranker(world(200), NoisySources, {}, seed=3)
    assert ranker is not None and ranker.probe is not None
    rows = np.random.default_rng(5).random((300, len(FEATURE_NAMES))).astype(np.float32)
    rows[:, ::3] *= 200.0  # ranks and counts, not only shares
    return ranker, rows


@pytest.mark.skipif(not any(__import__("shutil").which(t) for t in ("gcc", "clang")),
                    reason="no C compiler on this host to build compiled trees with")
@pytest.mark.parametrize("boosters", [1, 3])
def test_saved_ranker_is_served_by_compiled_trees_with_the_boosters_scores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, boosters: int) -> None:
    from service.training import ranker as ranker_module

    monkeypatch.setattr(ranker_module, "BOOSTERS", boosters)
    ranker, rows = _trained(tmp_path)
    ranker.save(tmp_path / "ranker")
    meta = json.loads((tmp_path / "ranker" / "ranker.json").read_text())
    assert meta["compiled"] is True and meta["compile_problem"] is None
    loaded = LearnedRanker.load(tmp_path / "ranker")
    assert loaded.compiled is not None and loaded.compile_problem is None
    # Differently seeded boosters, one library summing their trees; the score is their
    # mean.
    assert len(loaded.boosters) == boosters
    each = [b.predict(rows, num_threads=1) for b in ranker.boosters]
    assert all(not np.allclose(each[0], other) for other in each[1:])
    expected = ranker.predict(rows).astype(np.float32)
    assert np.allclose(expected, np.mean(each, axis=0), rtol=1e-6)
    assert np.array_equal(loaded.score(rows), expected)
    assert np.array_equal(loaded.score(rows[:1]), expected[:1])
    assert len(loaded.score(rows[:0])) == 0
    # Requests on other threads each get their own predictor, with the same scores.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(loaded.score, [rows] * 8):
            assert np.array_equal(got, expected)


def test_compiled_trees_from_elsewhere_or_not_agreeing_are_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.training import compiled

    ranker, rows = _trained(tmp_path)
    expected = ranker.predict(rows).astype(np.float32)
    # No compiler: the booster alone is saved, and says why.
    monkeypatch.setattr(shutil, "which", lambda name: None)
    ranker.save(tmp_path / "plain")
    monkeypatch.undo()
    meta = json.loads((tmp_path / "plain" / "ranker.json").read_text())
    assert meta["compiled"] is False and "no C compiler" in meta["compile_problem"]
    assert not (tmp_path / "plain" / compiled.LIB_FILE).exists()
    plain = LearnedRanker.load(tmp_path / "plain")
    assert plain.compiled is None and "no C compiler" in (plain.compile_problem or "")
    assert np.array_equal(plain.score(rows), expected)
    if not any(shutil.which(t) for t in compiled.TOOLCHAINS):
        return
    # Built on another kind of host: LightGBM scores.
    ranker.save(tmp_path / "moved")
    info_path = tmp_path / "moved" / compiled.COMPILED_FILE
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()),
                                     "host": "Plan9-mips-tl2cgen-0.1"}))
    moved = LearnedRanker.load(tmp_path / "moved")
    assert moved.compiled is None and "Plan9-mips" in (moved.compile_problem or "")
    assert np.array_equal(moved.score(rows), expected)
    # Another model's library in its place: the probe rows tell, LightGBM scores.
    other, _, _ = train_ranker(world(200, seed=9), NoisySources, {}, seed=4)
    assert other is not None
    other.save(tmp_path / "other")
    ranker.save(tmp_path / "swapped")
    (tmp_path / "swapped" / compiled.LIB_FILE).write_bytes(
        (tmp_path / "other" / compiled.LIB_FILE).read_bytes())
    swapped = LearnedRanker.load(tmp_path / "swapped")
    assert swapped.compiled is None and "probe rows" in (swapped.compile_problem or "")
    assert np.array_equal(swapped.score(rows), expected)


def test_a_ranker_saved_with_one_booster_still_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Artifacts from before rankers could average boosters name one model file."""
    from service.training import ranker as ranker_module

    monkeypatch.setattr(ranker_module, "BOOSTERS", 3)
    ranker, rows = _trained(tmp_path)
    single = LearnedRanker(ranker.boosters[:1], probe=ranker.probe)
    single.save(tmp_path / "single")
    meta_path = tmp_path / "single" / "ranker.json"
    meta = json.loads(meta_path.read_text())
    assert meta["models"] == ["ranker.txt"]
    del meta["models"]
    meta_path.write_text(json.dumps(meta))
    loaded = LearnedRanker.load(tmp_path / "single")
    assert len(loaded.boosters) == 1
    expected = np.asarray(ranker.boosters[0].predict(rows, num_threads=1)).astype(np.float32)
    assert np.array_equal(loaded.score(rows), expected)
    assert not np.allclose(loaded.score(rows), ranker.score(rows))
