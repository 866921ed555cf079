"""Each trained source on a synthetic log where the right answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from service.training.content import ContentSimilarity
from service.training.contract import UserEvent
from service.training.cooccurrence import CoOccurrence
from service.training.data import (
    MAX_VIAS,
    VIA_SHARE,
    History,
    Ranked,
    log_from_rows,
    neighbour_scores,
)
from service.training.models import BaseModels, fit_base_models
from service.training.popularity import Popularity
from service.training.sequence import SequenceModel
from service.training.transitions import Transitions
from tests.utils.training import (
    CYCLE,
    DAY,
    SPACE,
    START,
    TEXTS,
    cluster_rows,
    cycle_rows,
    make_log,
)

NOTHING = np.empty(0, dtype=np.int64)


def history(index: dict[str, int], *items: str, weight: float = 1.0) -> History:
    return History.of([UserEvent(i, START + n, weight, f"h{n}") for n, i in enumerate(items)],
                      index)


def names(log_items: list[str], ranked: Ranked) -> list[str]:
    return [log_items[i] for i in ranked.items.tolist()]


def test_transitions_follow_what_people_did_next_and_cite_the_last_item() -> None:
    log = make_log(cycle_rows())
    index = {item: i for i, item in enumerate(log.item_ids)}
    model = Transitions().fit(log, len(log.item_ids))
    for n, item in enumerate(CYCLE):
        expected = CYCLE[(n + 1) % len(CYCLE)]
        assert log.item_ids[model.successors_of(index[item])[0]] == expected
    ranked = model.recommend(history(index, "c", "a"), 3, NOTHING)
    assert names(log.item_ids, ranked)[0] == "b"
    assert ranked.via[0] == 1  # the history's "a"


def test_co_occurrence_neighbours_stay_in_their_cluster_and_cite_a_liked_item() -> None:
    log = make_log(cluster_rows())
    index = {item: i for i, item in enumerate(log.item_ids)}
    model = CoOccurrence().fit(log, len(log.item_ids))
    for item in SPACE:
        top = [log.item_ids[i] for i in model.neighbours_of(index[item])[:5]]
        assert set(top) == set(SPACE) - {item}, (item, top)
    consumed = {index[i] for i in ("s1", "s2")}
    ranked = model.recommend(history(index, "k1", "s1", "s2"), 4,
                             np.array(sorted(consumed), dtype=np.int64))
    assert set(names(log.item_ids, ranked)) <= set(SPACE) - {"s1", "s2"}
    assert len(ranked.items) == 4
    assert set(ranked.via.tolist()) <= {1, 2}  # a liked space item, never k1
    # Disliked items bring nothing.
    assert len(model.recommend(history(index, "s1", weight=0.0), 4, NOTHING).items) == 0


def test_neighbour_scores_name_every_substantial_contributor_largest_first() -> None:
    """Rows 0-3 are four history events (positions 20-23); items 4, 5, 6 get summed
    contributions from several of them."""
    assert (VIA_SHARE, MAX_VIAS) == (0.5, 3)  # the figures this test is built on
    entries = {  # (row, item): value; row 3 is weighted 0.5
        (0, 4): 0.4, (1, 4): 1.0, (2, 4): 0.6,  # 0.4 is under half of 1.0: cut
        (0, 5): 0.8, (3, 5): 0.8,  # 0.8 x 0.5 is exactly half of 0.8: kept
        (0, 6): 0.25, (1, 6): 0.25, (2, 6): 0.25, (3, 6): 0.5,  # four equal: three kept
    }
    (rows, cols), values = zip(*entries, strict=True), list(entries.values())
    matrix = sparse.csr_matrix((np.array(values, dtype=np.float32), (rows, cols)),
                               shape=(7, 7))
    ranked = neighbour_scores(matrix, np.arange(4), np.array([1.0, 1.0, 1.0, 0.5]),
                              np.arange(20, 24), 3, NOTHING)
    assert ranked.items.tolist() == [4, 5, 6]
    assert ranked.scores == pytest.approx([2.0, 1.2, 1.0])
    assert ranked.vias is not None
    assert ranked.vias.tolist() == [[21, 22, -1], [20, 23, -1], [20, 21, 22]]
    assert ranked.via.tolist() == [21, 20, 20]  # the largest: the first of vias
    # Excluding an item drops its row, and the rest keep theirs.
    ranked = neighbour_scores(matrix, np.arange(4), np.array([1.0, 1.0, 1.0, 0.5]),
                              np.arange(20, 24), 3, np.array([4]))
    assert ranked.vias is not None and ranked.vias.tolist() == [[20, 23, -1], [20, 21, 22]]


def test_co_occurrence_keeps_only_the_top_k_neighbours_per_item() -> None:
    log = make_log(cluster_rows())
    model = CoOccurrence(neighbours=2).fit(log, len(log.item_ids))
    assert np.diff(model.matrix.indptr).max() == 2


def test_sequence_model_learns_a_deterministic_cycle() -> None:
    log = make_log(cycle_rows())
    index = {item: i for i, item in enumerate(log.item_ids)}
    model = SequenceModel(dim=32, max_len=10, seconds=30, max_epochs=60, seed=1).fit(
        log, len(log.item_ids))
    assert model.losses[-1] < model.losses[0]
    right = 0
    for n in range(len(CYCLE)):
        recent = [CYCLE[(n + step) % len(CYCLE)] for step in range(4)]
        expected = CYCLE[(n + 4) % len(CYCLE)]
        right += names(log.item_ids, model.recommend(history(index, *recent), 1,
                                                     NOTHING)) == [expected]
    assert right >= 5  # chance is 1 in 6


def test_sequence_model_trains_with_sampled_softmax_too() -> None:
    log = make_log(cycle_rows())
    index = {item: i for i, item in enumerate(log.item_ids)}
    model = SequenceModel(dim=32, max_len=10, seconds=30, max_epochs=60, seed=1,
                          full_softmax_items=0, negatives=3).fit(log, len(log.item_ids))
    ranked = model.recommend(history(index, "b", "c", "d"), 1, NOTHING)
    assert names(log.item_ids, ranked) == ["e"]


def test_content_finds_the_item_that_shares_tags_even_if_nobody_saw_it() -> None:
    item_ids = sorted(TEXTS)
    index = {item: i for i, item in enumerate(item_ids)}
    model = ContentSimilarity().fit(item_ids, TEXTS)
    liked = history(index, "k1", "s1", "s2")
    ranked = model.recommend(liked, 5, np.array([index[i] for i in SPACE]))
    top = names(item_ids, ranked)
    assert top[0] == "unseen-space"
    assert ranked.via[0] in (1, 2)  # a liked space item, not the cooking one
    top = names(item_ids, model.recommend(liked, 4, np.array([index["s1"], index["s2"]])))
    assert set(top) <= set(SPACE) | {"unseen-space"}


def test_content_neighbours_are_the_most_similar_items_on_a_small_catalog() -> None:
    item_ids = sorted(TEXTS)
    model = ContentSimilarity(neighbours=3).fit(item_ids, TEXTS)
    exact = (model.matrix @ model.matrix.T).toarray()
    np.fill_diagonal(exact, -1.0)
    for item in range(len(item_ids)):
        start, end = model.similar_items.indptr[item], model.similar_items.indptr[item + 1]
        stored = np.sort(model.similar_items.data[start:end])[::-1]
        assert item not in model.similar_items.indices[start:end].tolist()
        best = np.sort(exact[item][exact[item] > 0])[::-1][:3]
        assert stored == pytest.approx(best, abs=1e-5), item_ids[item]


def test_content_on_a_tight_pair_budget_searches_rare_terms_and_scores_exactly() -> None:
    """A budget too small for the terms every item shares ("tags") still pairs items by
    their rarer terms, and what it stores is the exact cosine, common terms included."""
    item_ids = sorted(TEXTS)
    model = ContentSimilarity(neighbours=3, pair_budget=500).fit(item_ids, TEXTS)
    index = {item: i for i, item in enumerate(item_ids)}
    coo = model.similar_items.tocoo()
    assert coo.nnz > 0
    exact = (model.matrix @ model.matrix.T).toarray()
    assert coo.data == pytest.approx(exact[coo.row, coo.col], abs=1e-5)
    neighbours = [item_ids[i] for i in model.neighbours_of(index["unseen-space"])]
    assert neighbours and set(neighbours) <= set(SPACE)


def test_popularity_counts_recent_and_all_time_and_never_the_future() -> None:
    rows = [(f"u{n}", "old-hit", START + n, 1.0, f"o{n}") for n in range(10)]
    rows += [(f"u{n}", "new-hit", START + 100 * DAY + n, 1.0, f"n{n}") for n in range(4)]
    rows += [(f"u{n}", "hated", START + 100 * DAY + n, 0.0, f"h{n}") for n in range(8)]
    log = log_from_rows(rows)
    index = {item: i for i, item in enumerate(log.item_ids)}
    model = Popularity().fit(log, len(log.item_ids))
    items = np.array([index["old-hit"], index["new-hit"], index["hated"], -1])
    recent, all_time = model.scores(items, now=START + 200 * DAY)
    assert recent.tolist()[1] == 1.0 and recent.tolist()[0] == 0.0
    assert all_time[0] == 1.0 and 0 < all_time[1] < 1
    assert recent[2] == all_time[2] == 0 and recent[3] == all_time[3] == 0
    before, _ = model.scores(items, now=START + 50 * DAY)
    assert before[1] == 0.0  # the new hit had not happened yet
    top = model.recommend(2, NOTHING, now=START + 200 * DAY)
    assert [log.item_ids[i] for i in top.items] == ["new-hit", "old-hit"]


def test_base_models_give_every_source_and_skip_what_cannot_be_fit(tmp_path: Path) -> None:
    log = make_log(cycle_rows(users=12) + cluster_rows(users=12))
    models = fit_base_models(log, TEXTS, sequence_seconds=5)
    assert models.sources == ["cooccurrence", "transition", "sequence", "content", "popular"]
    assert "unseen-space" in models.item_ids
    hist = [UserEvent("a", START, 1.0, "e1"), UserEvent("b", START + 1, 1.0, "e2")]
    found = models.candidates(hist, 3, {"a", "b", "f"}, now=START + 400 * DAY)
    assert set(found) == set(models.sources)
    for hits in found.values():
        assert len(hits) <= 3 and not hits.keys() & {"a", "b", "f"}
        assert [h.rank for h in hits.values()] == list(range(len(hits)))
    assert next(iter(found["transition"])) == "c"
    assert found["transition"]["c"].via == 1
    assert found["transition"]["c"].vias == (1,)  # only "b" goes on to "c"
    # "c" neighbours both liked items: both are reasons, the newer (larger) first.
    assert found["cooccurrence"]["c"].vias == (1, 0)

    tiny = log_from_rows([("u1", "x", START, 1.0, "e1"), ("u1", "y", START + 1, 1.0, "e2")])
    few = fit_base_models(tiny, {})
    assert few.sources == ["popular"]
    assert any("skipped" in note for note in few.notes)
    assert set(few.candidates([UserEvent("x", START, 1.0)], 5, set(), START)) == {"popular"}


def test_cooccurrence_means_read_the_neighbour_matrix_and_zero_for_the_unknown() -> None:
    log = make_log(cluster_rows(users=12))
    models = BaseModels(log.item_ids, cooccurrence=CoOccurrence().fit(log, len(log.item_ids)))
    matrix, index = models.cooccurrence.matrix, models.index  # type: ignore[union-attr]

    def score(row: str, column: str) -> float:
        known = row in index and column in index
        return float(matrix[index[row], index[column]]) if known else 0.0

    # A group with a repeated item (counted once) and an unknown one (counted, as 0), a
    # group of one, a group of only the unknown.
    groups = [("s1", "nowhere", "k1", "s1"), ("s2",), ("gone",)]
    # Columns with a repeat (the training's samples may hold one) and unique (serving's).
    for columns in (["s2", "k2", "s1", "gone", "s3", "s2"], ["s2", "k2", "s1", "gone", "s3"]):
        got = models.cooccurrence_means(groups, columns)
        assert got.shape == (3, len(columns))
        for g, group in enumerate(groups):
            distinct = list(dict.fromkeys(group))
            for c, column in enumerate(columns):
                expected = sum(score(r, column) for r in distinct) / len(distinct)
                assert got[g, c] == pytest.approx(expected, rel=1e-12, abs=0)
        assert got[1, 0] == 0 and got[1, 2] > 0  # s2 is not its own neighbour; s1 is one
        assert got[0, -1] > 0 and got[0, 1] > 0  # the last column is filled too; k1's k2
        assert not got[2].any()
    assert not BaseModels(log.item_ids).cooccurrence_means([["s1"]], ["s2"]).any()
    assert models.cooccurrence_means([], ["s2"]).shape == (0, 1)
    assert models.cooccurrence_means([["s1"]], []).shape == (1, 0)


def test_a_sequence_model_continues_from_another_fit_of_the_same_shape() -> None:
    """Training's final sequence model starts from the held-out fit's weights: its first
    epoch starts where that fit ended (a far lower loss than from random weights), and
    a model of another catalog size or architecture is not loaded."""
    import torch

    log = make_log(cycle_rows())
    n = len(log.item_ids)
    first = SequenceModel(dim=32, max_len=10, seconds=30, max_epochs=40, seed=1).fit(log, n)
    assert first.net is not None and not first.warm_started
    loaded = SequenceModel(dim=32, max_len=10, seconds=30, max_epochs=0, seed=2).fit(
        log, n, start_from=first)
    assert loaded.warm_started and loaded.net is not None
    theirs = first.net.state_dict()
    assert all(torch.equal(value, theirs[key])
               for key, value in loaded.net.state_dict().items())
    continued = SequenceModel(dim=32, max_len=10, seconds=30, max_epochs=1, seed=2).fit(
        log, n, start_from=first)
    afresh = SequenceModel(dim=32, max_len=10, seconds=30, max_epochs=1, seed=2).fit(log, n)
    assert continued.losses[0] < 0.5 * afresh.losses[0]
    assert continued.losses[0] <= 1.5 * first.losses[-1]
    other_catalog = SequenceModel(dim=32, max_len=10, seconds=30, max_epochs=1, seed=2).fit(
        log, n + 1, start_from=first)
    other_shape = SequenceModel(dim=16, max_len=10, seconds=30, max_epochs=1, seed=2).fit(
        log, n, start_from=first)
    assert not other_catalog.warm_started and not other_shape.warm_started


def test_a_sequence_trained_by_epochs_ignores_the_clock_and_repeats_itself() -> None:
    """The evaluation trains the sequence model for a number of epochs, not seconds: a
    busy machine then trains the same model as an idle one."""
    log = make_log(cycle_rows(users=12) + cluster_rows(users=12))
    first = fit_base_models(log, TEXTS, sequence_seconds=1e-9, sequence_epochs=3)
    again = fit_base_models(log, TEXTS, sequence_seconds=1e-9, sequence_epochs=3)
    assert first.sequence is not None and again.sequence is not None
    assert len(first.sequence.losses) == 3  # the tiny time budget did not stop it
    assert first.sequence.losses == again.sequence.losses
    hist = [UserEvent("a", START, 1.0, "e1"), UserEvent("b", START + 1, 1.0, "e2")]
    assert first.candidates(hist, 5, set(), START + DAY) == \
        again.candidates(hist, 5, set(), START + DAY)
    timed = fit_base_models(log, TEXTS, sequence_seconds=1e-9)
    assert timed.sequence is not None and len(timed.sequence.losses) == 1


def test_save_and_load_give_identical_scores(tmp_path: Path) -> None:
    log = make_log(cycle_rows(users=12) + cluster_rows(users=12))
    models = fit_base_models(log, TEXTS, sequence_seconds=5)
    models.save(tmp_path / "artifact")
    loaded = BaseModels.load(tmp_path / "artifact")
    assert loaded.item_ids == models.item_ids and loaded.sources == models.sources
    histories = [["a", "b", "c"], ["s1", "k2", "s3"], ["k1"], ["nobody-knows-this"]]
    for items in histories:
        hist = [UserEvent(i, START + n, 1.0, f"e{n}") for n, i in enumerate(items)]
        assert loaded.candidates(hist, 5, {"d"}, START + DAY) == \
            models.candidates(hist, 5, {"d"}, START + DAY)
    ids = ["a", "s1", "unseen-space", "missing"]
    for ours, theirs in zip(loaded.popularity(ids, START), models.popularity(ids, START),
                            strict=True):
        assert ours.tolist() == theirs.tolist()
    assert not list((tmp_path / "artifact").glob("*.pkl"))


@pytest.mark.parametrize(("type_", "value", "expected"), [
    ("rating", 5.0, 1.0), ("rating", 3.5, 0.8), ("rating", 2.5, 0.0), ("rating", 1.0, 0.0),
    ("like", None, 1.0), ("purchase", None, 1.0), ("view", None, 0.5), ("click", None, 0.5),
    ("search", None, 0.5), ("dislike", None, 0.0), ("skip", None, 0.0),
])
def test_event_weight(type_: str, value: float | None, expected: float) -> None:
    from service.training.data import event_weight

    assert event_weight(type_, value, 5.0) == pytest.approx(expected)
    assert 0.0 <= event_weight("rating", 4.0, 5.0) <= 1.0


def test_log_from_rows_sorts_by_time_then_input_order() -> None:
    log = log_from_rows([("u2", "y", 20.0, 1.0, "e1"), ("u1", "x", 10.0, 0.5, "e2"),
                         ("u1", "z", 20.0, 0.0, "e3")])
    assert log.event_ids == ["e2", "e1", "e3"]
    assert log.user_ids == ["u1", "u2"] and log.item_ids == ["x", "y", "z"]
    assert log.items.tolist() == [0, 1, 2] and log.users.tolist() == [0, 1, 0]
    assert log.weight.tolist() == [0.5, 1.0, 0.0]


def test_split_holds_out_the_last_positives_each_with_everything_before_it() -> None:
    from service.training.data import split_last_positives

    # u1: 11 positives and a dislike between the last two; u2: 9 positives (a short
    # history: one held out); u3: too few positives to be sampled.
    rows = [("u1", f"a{n}", float(n), 1.0, f"u1-{n}") for n in range(10)]
    rows += [("u1", "bad", 10.0, 0.0, "u1-bad"), ("u1", "a10", 11.0, 1.0, "u1-10")]
    rows += [("u2", f"b{n}", float(n), 1.0, f"u2-{n}") for n in range(9)]
    rows += [("u3", f"c{n}", float(n), 1.0, f"u3-{n}") for n in range(4)]
    log = log_from_rows(rows)
    keep, held = split_last_positives(log, seed=0, holdouts=3)
    user = {name: n for n, name in enumerate(log.user_ids)}
    assert sorted(held) == [user["u1"], user["u2"]]

    def ids(positions: list[int]) -> list[str]:
        return [log.event_ids[p] for p in positions]

    u1 = held[user["u1"]]
    assert [log.event_ids[t] for _, t in u1] == ["u1-8", "u1-9", "u1-10"]
    assert ids(u1[0][0]) == [f"u1-{n}" for n in range(8)]
    assert ids(u1[2][0]) == [*(f"u1-{n}" for n in range(10)), "u1-bad"]
    assert [(ids(h), log.event_ids[t]) for h, t in held[user["u2"]]] == [
        ([f"u2-{n}" for n in range(8)], "u2-8")]
    # The fit keeps everything before each user's first held-out event, and all of u3.
    kept = {log.event_ids[p] for p in np.flatnonzero(keep).tolist()}
    assert kept == {*(f"u1-{n}" for n in range(8)), *(f"u2-{n}" for n in range(8)),
                    *(f"u3-{n}" for n in range(4))}
    # One held-out event each is the split with `holdouts=1`; zero is refused.
    _, single = split_last_positives(log, seed=0, holdouts=1)
    assert {u: [t for _, t in v] for u, v in single.items()} == {
        u: [v[-1][1]] for u, v in held.items()}
    with pytest.raises(ValueError, match="at least 1"):
        split_last_positives(log, seed=0, holdouts=0)


def test_a_loaded_artifact_keeps_a_users_personal_candidates_until_the_history_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from service.training.contract import ModelMeta
    from service.training.store import TrainedModels

    log = make_log(cycle_rows(users=12) + cluster_rows(users=12))
    base = fit_base_models(log, TEXTS, sequence_seconds=1e-9, sequence_epochs=2)
    models = TrainedModels(ModelMeta("v1", 1, "2026-01-01T00:00:00Z", len(log), 24,
                                     len(base.item_ids), list(base.sources), False), base)
    # (personal sources asked, popular asked), per call into the base models.
    asked: list[tuple[bool, bool]] = []
    real, real_popular = base.ranked, base.popular_hits

    def counting(*args: object, **kw: object) -> object:
        asked.append((True, bool(args[4]) if len(args) > 4 else bool(kw.get("popular", True))))
        return real(*args, **kw)  # type: ignore[arg-type]

    def counting_popular(*args: object, **kw: object) -> object:
        asked.append((False, True))
        return real_popular(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(base, "ranked", counting)
    monkeypatch.setattr(base, "popular_hits", counting_popular)
    hist = [UserEvent("a", START, 1.0, "e1"), UserEvent("b", START + 1, 1.0, "e2")]
    first = models.candidates(hist, 3, {"a", "b"}, now=START + 400 * DAY)
    # The same answer as the base models give, in the same source order.
    direct = base.candidates(hist, 3, {"a", "b"}, now=START + 400 * DAY)
    assert list(first) == list(direct) == base.sources and first == direct
    asked.clear()
    # Asked again, later, with the same history and the counts popular ranks by unchanged
    # (both after the log's end): nothing is asked, and the answer is the same.
    again = models.candidates(hist, 3, {"a", "b"}, now=START + 401 * DAY)
    assert asked == [] and again == first
    # As of an hour inside the log (a replay) popular's counts differ: popular alone is
    # asked, and answers as the base models do then.
    assert base.popular is not None
    earlier = base.popular.end - 5 * DAY
    replayed = models.candidates(hist, 3, {"a", "b"}, now=earlier)
    assert asked == [(False, True)] and replayed["transition"] == first["transition"]
    assert replayed == base.candidates(hist, 3, {"a", "b"}, now=earlier)
    assert replayed["popular"] != first["popular"]
    # A new event, another n or other exclusions: the personal sources are asked again.
    for h, n, exclude in [([*hist, UserEvent("c", START + 2, 1.0, "e3")], 3, {"a", "b", "c"}),
                          (hist, 4, {"a", "b"}), (hist, 3, {"a", "b", "d"})]:
        asked.clear()
        assert models.candidates_if_kept(h, n, exclude, now=START + 401 * DAY) is None
        models.candidates(h, n, exclude, now=START + 401 * DAY)
        assert asked == [(True, False), (False, True)]
    # Only what is kept is answered without the personal sources: the same answer.
    asked.clear()
    kept = models.candidates_if_kept(hist, 3, {"a", "b"}, now=START + 401 * DAY)
    assert kept == again and asked == [(False, True)]
