"""Profile-tracking metrics on hand-built timelines with answers worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from evals.synthetic import PlantedPhase, SyntheticData, generate, user_events
from evals.tracking import (
    DEFAULT_ASSIGN_THRESHOLD,
    ChangeLag,
    EmbeddingAssigner,
    FacetView,
    KeywordAssigner,
    ProfileSnapshot,
    actual_mix,
    facet_precision_recall,
    facet_text,
    interest_distribution_error,
    next_period_error,
    predicted_mix,
    summarize_lags,
    top_like,
    tracking_lag,
)
from evals.types import Interaction

KEYWORDS = KeywordAssigner({"jazz": ["jazz", "bebop"], "hiking": ["hiking", "trail"],
                            "baking": ["baking", "sourdough"]})

# jazz, then hiking from the 11th event, then mostly baking (with some jazz) from the 26th.
TRUTH = [
    PlantedPhase(start_ts=0, end_ts=100, categories={"jazz": 1.0}, start_event=0),
    PlantedPhase(start_ts=100, end_ts=200, categories={"hiking": 1.0}, start_event=10),
    PlantedPhase(start_ts=200, end_ts=300, categories={"baking": 0.7, "jazz": 0.3},
                 start_event=25),
]


def like(text: str, strength: float) -> FacetView:
    return FacetView(text, strength, "like")


def avoid(text: str, strength: float) -> FacetView:
    return FacetView(text, strength, "avoid")


def snap(ts: int, seen: int, *facets: FacetView) -> ProfileSnapshot:
    return ProfileSnapshot(ts, seen, facets)


def lags(timeline: Sequence[ProfileSnapshot]) -> list[int | None]:
    return [c.lag for c in tracking_lag(timeline, TRUTH, KEYWORDS)]


def test_lag_counts_events_from_the_change_to_the_first_snapshot_with_the_new_top() -> None:
    timeline = [
        snap(50, 5, like("jazz", 0.8)),
        snap(120, 13, like("jazz", 0.6), like("hiking", 0.5)),
        # an avoid-facet is never the top, however strong
        snap(140, 16, like("jazz", 0.4), like("hiking trails", 0.7), avoid("baking", 0.9)),
        snap(180, 22, like("hiking", 0.9)),
        snap(230, 30, like("hiking", 0.6), like("sourdough baking", 0.5)),
        snap(290, 38, like("hiking", 0.3), like("baking", 0.9)),
    ]
    assert lags(timeline) == [16 - 10, 38 - 25]
    changes = tracking_lag(timeline, TRUTH, KEYWORDS)
    assert [(c.change_ts, c.category) for c in changes] == [(100, "hiking"), (200, "baking")]


def test_catching_up_only_after_the_next_change_is_censored() -> None:
    timeline = [
        snap(150, 15, like("jazz", 0.9), like("hiking", 0.2)),
        snap(250, 30, like("hiking", 0.9)),  # hiking on top, but the user moved to baking
        snap(310, 40, like("baking", 0.9)),  # after the last phase: not scored
    ]
    assert lags(timeline) == [None, None]


def test_already_on_top_at_the_change_is_lag_zero_and_ties_go_to_the_first_facet() -> None:
    timeline = [
        snap(100, 9, like("hiking", 0.5), like("jazz", 0.5)),  # read nothing new yet
        snap(260, 30, like("jazz", 0.7), like("baking", 0.7)),
        snap(270, 31, like("baking", 0.7), like("jazz", 0.7)),
    ]
    assert lags(timeline) == [0, 31 - 25]
    assert top_like([avoid("a", 0.9), like("b", 0.4), like("c", 0.4)]) == "b"
    assert top_like([avoid("a", 0.9)]) is None


def test_lag_summary_reports_reach_and_averages_only_reached_changes() -> None:
    summary = summarize_lags([ChangeLag(1, "a", 4), ChangeLag(2, "b", None),
                              ChangeLag(3, "c", 10), ChangeLag(4, "d", 7)])
    assert (summary.changes, summary.reached) == (4, 3)
    assert summary.share_reached == pytest.approx(0.75)
    assert summary.mean_lag == pytest.approx(7.0)
    assert summary.median_lag == pytest.approx(7.0)
    empty = summarize_lags([])
    assert (empty.changes, empty.share_reached, empty.mean_lag) == (0, None, None)


def test_a_perfect_tracker_scores_one_and_a_stale_tracker_less() -> None:
    perfect = [snap(50, 5, like("jazz", 0.8)),
               snap(150, 15, like("hiking", 0.8), avoid("jazz", 0.6)),
               snap(250, 30, like("baking", 0.7), like("bebop", 0.3))]
    stale = [snap(50, 5, like("jazz", 0.8)),
             snap(150, 15, like("jazz", 0.8)),
             snap(250, 30, like("jazz", 0.8))]
    best = facet_precision_recall(perfect, TRUTH, KEYWORDS)
    assert (best.precision, best.recall, best.snapshots) == (1.0, 1.0, 3)
    # stale: (1, 1) in phase 1, (0, 0) in phase 2, (1, 1/2) in phase 3 where jazz is minor
    worse = facet_precision_recall(stale, TRUTH, KEYWORDS)
    assert worse.precision == pytest.approx(2 / 3)
    assert worse.recall == pytest.approx(1.5 / 3)


def test_precision_counts_unmatched_facets_and_ignores_faded_ones() -> None:
    timeline = [snap(150, 15, like("hiking", 0.8), like("knitting", 0.5), like("jazz", 0.05)),
                snap(160, 16),  # empty profile: recall 0, precision undefined
                snap(400, 50, like("jazz", 0.9))]  # outside every phase: not scored
    scores = facet_precision_recall(timeline, TRUTH, KEYWORDS)
    assert (scores.snapshots, scores.snapshots_with_likes) == (2, 1)
    assert scores.precision == pytest.approx(1 / 2)
    assert scores.recall == pytest.approx(1 / 2)
    strict = facet_precision_recall(timeline[:1], TRUTH, KEYWORDS, strength_floor=0.0)
    assert strict.precision == pytest.approx(1 / 3)


def test_distribution_error_is_zero_for_identical_and_one_for_disjoint_mixes() -> None:
    assert interest_distribution_error({"a": 0.3, "b": 0.7}, {"a": 0.3, "b": 0.7}) == 0.0
    assert interest_distribution_error({"a": 2.0, "b": 2.0}, {"a": 0.5, "b": 0.5}) == 0.0
    assert interest_distribution_error({"a": 1.0}, {"b": 0.4, "c": 0.6}) == 1.0
    assert interest_distribution_error({"a": 0.5, "b": 0.5}, {"a": 1.0}) == pytest.approx(0.5)
    assert interest_distribution_error({}, {"a": 1.0}) == 1.0
    with pytest.raises(ValueError):
        interest_distribution_error({"a": 1.0}, {})
    with pytest.raises(ValueError):
        interest_distribution_error({"a": -1.0, "b": 2.0}, {"a": 1.0})


def test_mixes_from_facets_and_from_events() -> None:
    facets = [like("jazz", 0.6), like("bebop", 0.2), like("hiking", 0.2),
              avoid("baking", 0.9), like("knitting", 0.5)]
    assert predicted_mix(facets, KEYWORDS) == pytest.approx({"jazz": 0.8, "hiking": 0.2})
    category = {"j1": "jazz", "j2": "jazz", "h1": "hiking"}
    events = [Interaction("u", "j1", 10, 5.0), Interaction("u", "h1", 20, 1.0),
              Interaction("u", "j2", 30, None), Interaction("u", "zz", 35, 5.0),
              Interaction("u", "h1", 40, 4.0)]
    assert actual_mix(events, category, 10, 40) == pytest.approx({"jazz": 2 / 3, "hiking": 1 / 3})
    assert actual_mix(events, category, 10, 41, min_rating=4) == pytest.approx(
        {"jazz": 2 / 3, "hiking": 1 / 3})
    assert actual_mix(events, category, 50, 90) == {}


@pytest.fixture(scope="module")
def synthetic() -> SyntheticData:
    return generate(30, seed=4)


def test_knowing_the_next_phase_predicts_it_better_than_the_last_one(
        synthetic: SyntheticData) -> None:
    names = KeywordAssigner({c: [c] for c in synthetic.categories})
    events = user_events(synthetic)
    right: list[float] = []
    stale: list[float] = []
    for user, phases in synthetic.truth.items():
        before, after = phases[0], phases[1]
        ts = after.start_ts - 1
        for mix, out in ((after.categories, right), (before.categories, stale)):
            profile = snap(ts, after.start_event, *(like(c, w) for c, w in mix.items()))
            error = next_period_error(profile, events[user], synthetic.item_category, names,
                                      period_s=7 * 86_400)
            assert error is not None
            out.append(error)
    assert sum(right) / len(right) < 0.3 < 0.7 < sum(stale) / len(stale)


# The real embedder: does the assigner put natural facet wording in the right category?

def test_facet_text_joins_label_and_description() -> None:
    assert facet_text(" Modal jazz ", "Loves modal jazz records") == (
        "Modal jazz: Loves modal jazz records")
    assert facet_text("Chess", "") == "Chess"


class _CountingEmbedder:
    """Fixed 2-d directions: 'x' points along jazz, 'y' along hiking, 'd' between."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        table = {"jazz": [1.0, 0.0], "hiking": [0.0, 2.0], "x": [3.0, 0.5], "y": [0.1, 1.0],
                 "d": [1.0, 1.0], "z": [-1.0, -1.0]}
        return [table[t] for t in texts]


def test_embedding_assigner_takes_the_nearest_category_above_the_threshold() -> None:
    embedder = _CountingEmbedder()
    assigner = EmbeddingAssigner({"jazz": "jazz", "hiking": "hiking"}, embedder, threshold=0.8)
    assert assigner.assign(["x", "y", "d", "z", "x"]) == ["jazz", "hiking", None, None, "jazz"]
    assert assigner.assign(["y"]) == ["hiking"]
    assert embedder.calls[1:] == [["x", "y", "d", "z"]]  # each new text embedded once
    loose = EmbeddingAssigner({"jazz": "jazz", "hiking": "hiking"}, embedder, threshold=0.7)
    assert loose.assign(["d"]) == ["jazz"]  # cos 0.707 to both: the first category wins


@pytest.fixture(scope="module")
def real_assigner(synthetic: SyntheticData) -> EmbeddingAssigner:
    from service.vectors.embeddings import LocalEmbedder

    return EmbeddingAssigner(synthetic.categories, LocalEmbedder())


HAND_WRITTEN = {
    "jazz records": "Modal jazz: Loves modal jazz records",
    "hiking gear": "Trail hiking: Interested in hiking boots and trekking poles",
    "baking": "Sourdough baking: Bakes sourdough bread at home",
    "chess": "Endgame study: Reads chess endgame books",
    "gardening": "Composting: Makes compost for the garden",
    "science fiction novels": "Space opera: Reads space opera novels",
    "road cycling": "Road cycling: Rides a carbon road bike",
    "photography": "Landscape photography: Shoots landscapes with a tripod",
    "aquarium keeping": "Fishkeeping: Buys aquarium filters and test kits",
    "knitting": "Sock knitting: Knits socks with hand-dyed yarn",
}
UNRELATED = ["Tax law: Reads about corporate tax regulations",
             "Football: Supports a Premier League club",
             "Skincare: Buys moisturisers and serums"]


@pytest.mark.slow
def test_real_embedder_assigns_descriptions_and_facets_to_their_category(
        synthetic: SyntheticData, real_assigner: EmbeddingAssigner) -> None:
    assert real_assigner.threshold == DEFAULT_ASSIGN_THRESHOLD
    names = list(synthetic.categories)
    assert real_assigner.assign([synthetic.categories[n] for n in names]) == names
    assert set(HAND_WRITTEN) == set(names)
    assert real_assigner.assign(list(HAND_WRITTEN.values())) == list(HAND_WRITTEN)
    assert real_assigner.assign(UNRELATED) == [None] * len(UNRELATED)


@pytest.mark.slow
def test_real_embedder_lag_on_natural_wording(real_assigner: EmbeddingAssigner) -> None:
    truth = [PlantedPhase(0, 100, {"jazz records": 1.0}, 0),
             PlantedPhase(100, 200, {"knitting": 1.0}, 12)]
    timeline = [snap(90, 11, like("Bebop collector: Buys hard bop albums on vinyl", 0.8)),
                snap(130, 15, like("Bebop collector: Buys hard bop albums on vinyl", 0.6),
                     like("Knitting: Knits sweaters and hats", 0.4)),
                snap(160, 19, like("Bebop collector: Buys hard bop albums on vinyl", 0.4),
                     like("Knitting: Knits sweaters and hats", 0.7))]
    assert [c.lag for c in tracking_lag(timeline, truth, real_assigner)] == [19 - 12]
