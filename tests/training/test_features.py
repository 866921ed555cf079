"""The ranker's feature rows: one fixed, versioned list, computed the same for training
and serving."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from service.training.contract import (
    ALL_SOURCES,
    CandidateSource,
    FacetSignal,
    SourceHit,
    UserEvent,
)
from service.training.features import (
    COLUMN,
    FACET_CF_COLUMNS,
    FEATURE_NAMES,
    MAX_AGE_DAYS,
    MISSING_RANK,
    build_features,
    facet_cooccurrence,
)

DAY = 86400.0
NOW = 1_000 * DAY


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_the_list_names_every_source_once_with_score_and_rank() -> None:
    for source in ALL_SOURCES:
        assert f"score_{source}" in FEATURE_NAMES and f"rank_{source}" in FEATURE_NAMES
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_sources_facets_popularity_and_recency() -> None:
    history = [UserEvent("old", NOW - 40 * DAY, 1.0, "e1"),
               UserEvent("new", NOW - 2 * DAY, 1.0, "e2")]
    hits: dict[CandidateSource, dict[str, SourceHit]] = {
        "cooccurrence": {"a": SourceHit(0.9, 0, via=0), "b": SourceHit(0.5, 3, via=1)},
        "popular": {"b": SourceHit(0.7, 1)},
    }
    vectors = np.stack([unit(1, 0), unit(0, 1), unit(1, 1)])
    facets = [FacetSignal(0.8, True, False, unit(1, 0)),
              FacetSignal(0.4, False, False, unit(0, 1)),
              FacetSignal(0.5, False, True, unit(0, 1))]
    recent = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    all_time = np.array([0.4, 0.5, 0.6], dtype=np.float32)
    rows = build_features(["a", "b", "c"], hits, history, vectors, facets,
                          (recent, all_time), NOW)
    assert rows.shape == (3, len(FEATURE_NAMES)) and rows.dtype == np.float32
    a, b, c = rows

    assert a[COLUMN["score_cooccurrence"]] == pytest.approx(0.9)
    assert a[COLUMN["rank_cooccurrence"]] == 0
    assert a[COLUMN["score_popular"]] == 0 and a[COLUMN["rank_popular"]] == MISSING_RANK
    assert b[COLUMN["rank_cooccurrence"]] == 3 and b[COLUMN["score_popular"]] == pytest.approx(0.7)
    assert [r[COLUMN["n_sources"]] for r in rows] == [1, 2, 0]
    assert c[COLUMN["rank_facet"]] == MISSING_RANK

    # a lies on the long-term facet, b on the short one (and on the avoid-facet).
    assert a[COLUMN["facet_best"]] == pytest.approx(0.8)
    assert a[COLUMN["facet_best_long"]] == 1 and b[COLUMN["facet_best_long"]] == 0
    assert b[COLUMN["facet_best"]] == pytest.approx(0.4)
    assert c[COLUMN["facet_sum"]] == pytest.approx((0.8 + 0.4) / np.sqrt(2), rel=1e-5)
    assert a[COLUMN["avoid_penalty"]] == pytest.approx(0.0, abs=1e-6)
    assert b[COLUMN["avoid_penalty"]] == pytest.approx(0.5)

    assert rows[:, COLUMN["pop_recent"]].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert rows[:, COLUMN["pop_all"]].tolist() == pytest.approx([0.4, 0.5, 0.6])
    assert a[COLUMN["via_age_days"]] == pytest.approx(40)
    assert b[COLUMN["via_age_days"]] == pytest.approx(2)
    assert c[COLUMN["via_age_days"]] == MAX_AGE_DAYS


def test_source_columns_match_one_hit_at_a_time() -> None:
    """Many sources naming overlapping items (some not candidates, some ranked past the
    cap, some with vias outside the history): each column as a hit-by-hit reading says."""
    rng = np.random.default_rng(7)
    candidates = [f"i{n}" for n in range(60)]
    history = [UserEvent(f"h{n}", NOW - float(rng.uniform(0, 500)) * DAY, 1.0, f"e{n}")
               for n in range(8)]
    hits = {source: {f"i{int(n)}": SourceHit(float(rng.uniform(0, 2)), int(rank) * 30,
                                              via=int(rng.integers(-1, 10)))
                     for rank, n in enumerate(rng.choice(80, size=40, replace=False))}
            for source in ALL_SOURCES}
    pop = (np.zeros(60, np.float32), np.zeros(60, np.float32))
    rows = build_features(candidates, hits, history, None, [], pop, NOW)
    for j, item in enumerate(candidates):
        named = {s: h[item] for s, h in hits.items() if item in h}
        assert rows[j, COLUMN["n_sources"]] == len(named)
        for source in ALL_SOURCES:
            hit = named.get(source)
            assert rows[j, COLUMN[f"score_{source}"]] == np.float32(hit.score if hit else 0)
            assert rows[j, COLUMN[f"rank_{source}"]] == (
                min(hit.rank, MISSING_RANK) if hit else MISSING_RANK)
        vias = [history[h.via].ts for h in named.values()
                if h.via is not None and 0 <= h.via < len(history)]
        age = (NOW - max(vias)) / DAY if vias else MAX_AGE_DAYS
        assert rows[j, COLUMN["via_age_days"]] == np.float32(min(max(age, 0), MAX_AGE_DAYS))


def test_without_vectors_or_facets_the_facet_features_are_zero() -> None:
    hits: dict[CandidateSource, dict[str, SourceHit]] = {"sequence": {"x": SourceHit(1.0, 0)}}
    pop = (np.zeros(1, np.float32), np.zeros(1, np.float32))
    facets = [FacetSignal(1.0, True, False, unit(1, 0))]
    for vectors, given in [(None, facets), (np.stack([unit(1, 0)]), [])]:
        row = build_features(["x"], hits, [], vectors, given, pop, NOW)[0]
        assert row[COLUMN["facet_best"]] == 0 and row[COLUMN["avoid_penalty"]] == 0
        assert row[COLUMN["score_sequence"]] == 1
    no_pop = (np.zeros(0, np.float32), np.zeros(0, np.float32))
    assert build_features([], hits, [], None, [], no_pop, NOW).shape == (0, len(FEATURE_NAMES))


def test_a_profile_reaches_the_features_as_training_saw_pseudo_facets() -> None:
    """Like strengths become shares (as pseudo-facets' are); one avoid signal carries the
    share of negative events, as in training, only with two negatives at least."""
    from service.training.contract import UserEvent
    from service.training.features import profile_signals

    unit = np.eye(3, dtype=np.float32)
    history = [UserEvent(f"i{n}", float(n), 0.0 if n < 2 else 1.0) for n in range(8)]
    signals = profile_signals([(0.6, False, unit[0], ("i3", "i4")), (0.2, True, unit[1], ())],
                              unit[2], history)
    likes = [s for s in signals if not s.avoid]
    assert [round(s.strength, 6) for s in likes] == [0.75, 0.25]
    assert [s.items for s in likes] == [("i3", "i4"), ()]
    assert likes[1].long_term and not likes[0].long_term
    [avoid] = [s for s in signals if s.avoid]
    assert avoid.strength == 2 / 8 and np.array_equal(avoid.centroid, unit[2])
    assert not any(s.avoid for s in profile_signals([], unit[2], history[1:]))


# Co-occurrence scores from (row) evidence items to (column) candidates, as a model gives.
NEIGHBOURS = {("e1", "a"): 0.6, ("e2", "a"): 0.2, ("e3", "b"): 0.9, ("e1", "b"): 0.3}


def means(groups: Sequence[Sequence[str]], columns: Sequence[str]) -> np.ndarray:
    """Each group's mean score over its distinct items, as `cooccurrence_means` gives."""
    rows = [[sum(NEIGHBOURS.get((r, c), 0.0) for r in dict.fromkeys(group)) / len(set(group))
             for c in columns] for group in groups]
    return np.array(rows, dtype=np.float64).reshape(len(groups), len(columns))


def test_facet_cooccurrence_weighs_each_facets_mean_neighbour_score_by_its_strength() -> None:
    facets = [FacetSignal(0.75, False, False, unit(1, 0), items=("e1", "e2")),
              FacetSignal(0.25, False, False, unit(0, 1), items=("e3", "e3")),  # once
              FacetSignal(1.0, False, False, unit(0, 1)),  # no items: no part in them
              FacetSignal(0.9, False, True, unit(1, 1), items=("e3",))]  # avoid: none
    a, b, c = facet_cooccurrence(facets, ["a", "b", "c"], means)
    # a: facet 1's mean (0.6 + 0.2) / 2 = 0.4; b: facet 1's 0.15, facet 2's 0.9.
    assert a.tolist() == pytest.approx([0.75 * 0.4, 0.75 * 0.4, 0.4])
    assert b.tolist() == pytest.approx([0.25 * 0.9, 0.75 * 0.15 + 0.25 * 0.9, 0.9])
    assert c.tolist() == [0.0, 0.0, 0.0]
    assert facet_cooccurrence(facets[2:], ["a"], means).tolist() == [[0.0, 0.0, 0.0]]


def test_the_cooccurrence_columns_come_from_the_models_or_are_zero() -> None:
    hits: dict[CandidateSource, dict[str, SourceHit]] = {
        "sequence": {"a": SourceHit(1.0, 0), "b": SourceHit(0.5, 1)}}
    pop = (np.zeros(2, np.float32), np.zeros(2, np.float32))
    facets = [FacetSignal(1.0, False, False, unit(1, 0), items=("e1", "e3"))]
    cols = [COLUMN[name] for name in FACET_CF_COLUMNS]
    rows = build_features(["a", "b"], hits, [], None, facets, pop, NOW, cooccurrence=means)
    assert rows[:, cols].ravel().tolist() == pytest.approx([0.3] * 3 + [0.6] * 3)
    assert not build_features(["a", "b"], hits, [], None, facets, pop, NOW)[:, cols].any()
    assert not build_features(["a", "b"], hits, [], None, [], pop, NOW,
                              cooccurrence=means)[:, cols].any()
