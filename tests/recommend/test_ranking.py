"""The arithmetic and the wording, without a database: quotas, fusion, avoid rules, MMR,
template sentences and the grounding check for model-written explanations."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.ingest.evidence import EvidenceEvent
from service.recommend.explain import (
    check_explanation,
    template_explanation,
    title_variants,
    unexplained_titles,
)
from service.recommend.ranking import (
    LazyDiscount,
    RankingParams,
    calibrated_mmr,
    discount_unexplained,
    fuse,
    mmr,
    normalized,
    tag_shares,
)
from service.training.pseudo_facets import facet_quotas

TS = datetime(2026, 1, 1, tzinfo=UTC)


def test_quotas_follow_strength_with_a_floor() -> None:
    assert facet_quotas([0.6, 0.3, 0.1], pool=50, floor=3) == [30, 15, 5]
    assert facet_quotas([0.9, 0.01], pool=50, floor=3) == [50, 3]
    assert facet_quotas([0.0, 0.0], pool=50, floor=3) == [3, 3]
    assert RankingParams().pool(10) == 50 and RankingParams().pool(100) == 500


def test_fusion_takes_the_best_reason_not_the_sum() -> None:
    # Item 0 is close to facet A only; item 1 is moderately close to both.
    like = np.array([[0.9, 0.5], [0.1, 0.5]], dtype=np.float32)
    fused = fuse([0.8, 0.8], like, [], np.zeros((0, 2), dtype=np.float32), RankingParams())
    assert fused.score.tolist() == pytest.approx([0.72, 0.4])  # a sum would make it 0.8 vs 0.8
    assert fused.best.tolist() == [0, 0]
    weaker_a = fuse([0.2, 0.8], like, [], np.zeros((0, 2), dtype=np.float32), RankingParams())
    assert weaker_a.best.tolist() == [0, 1]  # strength decides which facet is the reason


def test_avoid_facets_penalise_then_drop_unless_a_stronger_like_holds_the_item() -> None:
    like = np.array([[0.6, 0.6, 0.6]], dtype=np.float32)
    avoid = np.array([[0.2, 0.45, 0.55]], dtype=np.float32)
    fused = fuse([0.4], like, [0.5], avoid, RankingParams())
    assert fused.penalty.tolist() == pytest.approx([0.0, 0.225, 0.275])
    # Item 2 is squarely on the avoid-facet (0.55 >= 0.5) and that dislike (0.5 x 0.55)
    # outweighs its best like (0.4 x 0.6): dropped.
    assert fused.dropped.tolist() == [False, False, True]
    assert fused.score.tolist() == pytest.approx([0.24, 0.015, -0.035], abs=1e-6)
    # A like strong enough on the same item (1.0 x 0.6 > 0.275) keeps it, penalised.
    loved = fuse([1.0], like, [0.5], avoid, RankingParams())
    assert loved.dropped.tolist() == [False, False, False]
    assert loved.score.tolist() == pytest.approx([0.6, 0.375, 0.325])


def test_mmr_trades_relevance_for_variety() -> None:
    vectors = normalized(np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0]], dtype=np.float32))
    relevance = np.array([1.0, 0.95, 0.7])
    assert [i for i, _ in mmr(relevance, vectors, 2, lam=0.7)] == [0, 2]
    assert [i for i, _ in mmr(relevance, vectors, 2, lam=1.0)] == [0, 1]
    assert [i for i, _ in mmr(relevance, vectors, 5, lam=0.7)] == [0, 2, 1]
    assert mmr(np.array([]), vectors[:0], 3, lam=0.7) == []


def test_tag_shares_are_the_weighted_share_of_items_carrying_each_top_tag() -> None:
    items = [("animation", "children"), ("animation", "comedy"), ("drama",), ()]
    shares = tag_shares(items, [0.25, 0.25, 0.5, 1.0])
    # The untagged item weighs nothing; the others weigh 1 in all.
    assert shares == pytest.approx({"animation": 0.5, "children": 0.25, "comedy": 0.25,
                                    "drama": 0.5})
    assert set(tag_shares(items, [0.25, 0.25, 0.5, 1.0], top=2)) == {"animation", "drama"}
    assert tag_shares([(), ()], [1.0, 1.0]) == {}


def test_calibration_brings_the_lists_mix_towards_the_profiles() -> None:
    """Six candidates: the four best by relevance are dramas, the two below animated;
    a profile that is three quarters animation gets animated films into a list of
    four, in proportion, without reaching below the relevance it is given."""
    tags = [("drama",)] * 4 + [("animation", "children")] * 2
    relevance = np.array([1.0, 0.95, 0.9, 0.85, 0.6, 0.55])
    vectors = normalized(np.eye(6, dtype=np.float32))  # no redundancy between items
    target = {"animation": 0.75, "children": 0.75, "drama": 0.25}
    plain = [i for i, _ in mmr(relevance, vectors, 4, lam=0.7)]
    assert plain == [0, 1, 2, 3]
    calibrated = [i for i, _ in calibrated_mmr(relevance, vectors, tags, target, 4, 0.7, 0.5)]
    assert sorted(calibrated) == [0, 1, 4, 5]
    # Off, or with no target, it is MMR.
    assert [i for i, _ in calibrated_mmr(relevance, vectors, tags, target, 4, 0.7, 0.0)] == plain
    assert [i for i, _ in calibrated_mmr(relevance, vectors, tags, {}, 4, 0.7, 0.5)] == plain
    # A profile of dramas keeps the dramas.
    dramas = calibrated_mmr(relevance, vectors, tags, {"drama": 1.0}, 4, 0.7, 0.5)
    assert [i for i, _ in dramas] == plain
    # Untagged candidates leave the mix as it is: among them relevance decides.
    untagged: list[tuple[str, ...]] = [()] * 6
    assert [i for i, _ in calibrated_mmr(relevance, vectors, untagged, target, 4, 0.7, 0.5)
            ] == plain


def evidence(event_id: str, type_: str, title: str | None,
             text: str | None = None) -> EvidenceEvent:
    return EvidenceEvent(event_id, type_, TS, None if title is None else event_id, title, text)


def test_template_names_the_facet_and_two_evidence_items() -> None:
    liked = [evidence("e1", "like", "Alien"), evidence("e2", "like", "Dune"),
             evidence("e3", "like", "Solaris")]
    assert template_explanation("Science fiction films", liked) == (
        "Because you liked Alien and Dune (Science fiction films).")
    mixed = [evidence("e1", "rating", "Alien"), evidence("e2", "search", None, "space  films")]
    assert template_explanation("Sci-fi", mixed) == (
        "Because you rated Alien and searched for “space films” (Sci-fi).")
    assert template_explanation("Jazz", []) == "Because of your interest in Jazz."


def test_titles_are_recognised_in_the_forms_a_text_uses() -> None:
    assert title_variants("Matrix, The (1999)") == {
        "Matrix, The (1999)", "Matrix, The", "The Matrix"}
    assert title_variants("Up (2009)") == {"Up (2009)"}  # "Up" alone is an ordinary word
    text = "Since you loved the matrix and Heat, try this."
    assert unexplained_titles(text, [], ["Matrix, The (1999)", "Heat (1995)"]) == [
        "Matrix, The (1999)", "Heat (1995)"]
    # One-word titles count in their own capitalisation only: "alien visitors" is not Alien.
    assert unexplained_titles("A film about alien visitors.", [], ["Alien"]) == []
    assert unexplained_titles("You liked Aliens.", [], ["Alien"]) == []
    # A given title is fine, even when a consumed title hides inside it.
    assert unexplained_titles("You liked Alien 3.", ["Alien 3"], ["Alien"]) == []


@pytest.mark.parametrize(("parsed", "problem"), [
    ("text", "not a JSON object"),
    ({"explanation": " ", "evidence": ["e1"]}, "no explanation"),
    ({"explanation": "x" * 401, "evidence": ["e1"]}, "too long"),
    ({"explanation": "Science fiction films:", "evidence": ["e1"]}, "whole sentence"),
    ({"explanation": "You liked Alien, a film about", "evidence": ["e1"]}, "whole sentence"),
    ({"explanation": "It is a film you like and it is a film you like.", "evidence": ["e1"]},
     "repeats itself"),
    ({"explanation": "You liked Alien.", "evidence": []}, "no evidence"),
    ({"explanation": "You liked Alien.", "evidence": ["e1", "e9"]}, "not given: ['e9']"),
    ({"explanation": "You liked Alien and Dune.", "evidence": ["e1"]}, "['Dune']"),
])
def test_ungrounded_answers_are_refused(parsed: object, problem: str) -> None:
    result = check_explanation(parsed, ["e1", "e2"], ["Alien", "Interstellar"], ["Dune"])
    assert isinstance(result, str) and problem in result


def test_a_grounded_answer_is_kept() -> None:
    parsed = {"explanation": " You  liked Alien, so Interstellar fits. ",
              "evidence": ["e1", "e1"]}
    assert check_explanation(parsed, ["e1"], ["Alien", "Interstellar"], ["Dune"]) == (
        "You liked Alien, so Interstellar fits.", ["e1"])


def test_unexplained_candidates_keep_only_their_share_of_relevance() -> None:
    relevance = np.array([1.0, 0.9, 0.5, 0.2])
    got = discount_unexplained(relevance, [False, True, False, True], 0.7)
    assert got.tolist() == pytest.approx([0.7, 0.9, 0.35, 0.2])
    assert discount_unexplained(relevance, [False] * 4, 1.0).tolist() == relevance.tolist()
    assert relevance.tolist() == [1.0, 0.9, 0.5, 0.2]  # the input is left alone


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.5])
def test_a_discount_outside_its_range_is_refused(keep: float) -> None:
    with pytest.raises(ValueError, match="unexplained_keep must be in"):
        RankingParams(unexplained_keep=keep)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=1, max_value=40),
       st.integers(min_value=1, max_value=12), st.sampled_from([0.0, 0.5]),
       st.sampled_from([0.01, 0.5, 0.7, 0.95]), st.booleans())
def test_reasons_asked_lazily_give_the_list_every_reason_gives(
        seed: int, count: int, k: int, calibration: float, keep: float, ties: bool) -> None:
    """The list, its order and each pick's objective are the same whether every
    candidate's readability is known first or MMR asks only for those it needs."""
    rng = np.random.default_rng(seed)
    raw = rng.random(count)
    if ties:  # few distinct scores: ties broken by index, bounds equal to exact values
        raw = np.round(raw * 3) / 3
    relevance = np.sort(raw)[::-1] + 1e-6
    vectors = normalized(rng.normal(size=(count, 8)).astype(np.float32))
    readable: list[bool] = (rng.random(count) < 0.5).tolist()
    pool = ["a", "b", "c", "d"]
    tags = [[t for t in pool if rng.random() < 0.4] for _ in range(count)]
    target = {"a": 0.6, "b": 0.3, "d": 0.1}
    every = calibrated_mmr(discount_unexplained(relevance, readable, keep), vectors, tags,
                           target, k, 0.7, calibration)
    asked: list[int] = []

    def readable_of(i: int) -> bool:
        asked.append(i)
        return readable[i]

    lazy = calibrated_mmr(LazyDiscount(relevance, readable_of, keep), vectors, tags, target,
                          k, 0.7, calibration)
    assert lazy == every
    assert len(asked) == len(set(asked))  # each candidate asked once at most
    assert {i for i, _ in lazy} <= set(asked)  # every pick's own value was exact


def test_mmr_asks_only_what_it_needs() -> None:
    """Well separated scores: a readable best candidate settles the top, and the list of
    two never needs the tail's reasons."""
    relevance = np.array([1.0, 0.95, 0.5, 0.4, 0.3, 0.2])
    vectors = normalized(np.eye(6, dtype=np.float32))
    asked: list[int] = []

    def readable(i: int) -> bool:
        asked.append(i)
        return True

    assert [i for i, _ in mmr(LazyDiscount(relevance, readable, 0.7), vectors, 2, 0.7)] == [0, 1]
    assert asked == [0, 1]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_calibration_cost_is_the_summed_bernoulli_kl_of_target_and_list(data: st.DataObject
                                                                        ) -> None:
    """The cost MMR subtracts is calibration x sum over the target's tags of
    KL(Bernoulli(p) || Bernoulli(q)), q the list's share with the candidate added (mixed
    with 1% of p), however the terms are arranged; p may be 1 (every profile item)."""
    from service.recommend.ranking import CALIBRATION_MIX, SHARE_EPSILON, _Calibration

    tags = [f"t{n}" for n in range(8)]
    chosen = data.draw(st.lists(st.sampled_from(tags), min_size=1, max_size=8, unique=True))
    target = {t: data.draw(st.sampled_from([1.0, 0.9999999999999999, 0.5, 0.05])
                           | st.floats(0.01, 1.0))
              for t in chosen}
    sets = data.draw(st.lists(st.lists(st.sampled_from(tags), max_size=4), min_size=1,
                              max_size=12))
    calibration = _Calibration(sets, target, 0.5)
    listed: list[int] = []
    for _ in range(min(4, len(sets))):
        got = calibration.cost()
        for i in range(len(sets)):
            members = [sets[j] for j in [*listed, i] if sets[j]]
            expected = 0.0
            for t, drawn in target.items():
                p = 1.0 if drawn > 1.0 - SHARE_EPSILON else drawn  # rounding's 1 is 1
                share = sum(1 for m in members if t in m) / max(len(members), 1)
                q = (1 - CALIBRATION_MIX) * share + CALIBRATION_MIX * p
                expected += p * np.log(p / q) + (
                    (1 - p) * np.log((1 - p) / (1 - q)) if p < 1 else 0.0)
            assert got[i] == pytest.approx(0.5 * expected, abs=1e-9)
        pick = int(np.argmin(got))
        listed.append(pick)
        calibration.picked(pick)
