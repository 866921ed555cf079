"""The decay merge (DESIGN.md §4): examples and properties (hypothesis)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.profiles.merge import (
    DecayRules,
    NewFacet,
    ProfileFacet,
    cosine,
    decayed_strength,
    merge_profile,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = DecayRules()


def new_id(f: NewFacet) -> str:
    return "f-" + f.label


def prior_facet(facet_id: str, embedding: tuple[float, ...], strength: float = 0.6,
                **kw: object) -> ProfileFacet:
    base: dict[str, object] = {
        "facet_id": facet_id, "label": facet_id, "description": "", "strength": strength,
        "strength_at": T0, "horizon": "short", "polarity": "like", "evidence": ("e0",),
        "embedding": embedding, "first_seen": T0, "last_reinforced": T0,
    }
    base.update(kw)
    return ProfileFacet(**base)  # type: ignore[arg-type]


def new_facet(label: str, embedding: tuple[float, ...], strength: float = 0.8,
              polarity: str = "like", evidence: tuple[str, ...] = ("e1",)) -> NewFacet:
    return NewFacet(label=label, description="", strength=strength, polarity=polarity,  # type: ignore[arg-type]
                    evidence=evidence, embedding=embedding)


def test_half_life_per_horizon() -> None:
    short = prior_facet("a", (1.0, 0.0), strength=0.8)
    long = prior_facet("b", (1.0, 0.0), strength=0.8, horizon="long")
    assert decayed_strength(short, T0 + timedelta(days=7), RULES) == pytest.approx(0.4)
    assert decayed_strength(long, T0 + timedelta(days=90), RULES) == pytest.approx(0.4)
    pinned = prior_facet("c", (1.0, 0.0), strength=0.8, pinned=True)
    assert decayed_strength(pinned, T0 + timedelta(days=700), RULES) == 0.8


def test_match_reinforces_with_saturation_and_unions_evidence() -> None:
    at = T0 + timedelta(days=7)  # prior decays 0.6 -> 0.3
    merged = merge_profile([prior_facet("jazz", (1.0, 0.0))],
                           [new_facet("Jazz music", (0.95, 0.05), strength=0.8)], at, RULES, new_id)
    assert len(merged) == 1
    f = merged[0]
    assert f.strength == pytest.approx(0.3 + 0.7 * 0.5 * 0.8)
    assert f.evidence == ("e0", "e1") and f.reinforcements == 1 and f.strength_at == at
    assert f.label == "jazz"  # the existing facet keeps its identity


def test_unmatched_new_is_short_at_eta_n_and_unmatched_long_prior_only_decays() -> None:
    at = T0 + timedelta(days=1)
    prior = prior_facet("jazz", (1.0, 0.0), horizon="long")
    merged = merge_profile([prior], [new_facet("Hiking", (0.0, 1.0), strength=0.6)], at, RULES,
                           new_id)
    by_id = {f.facet_id: f for f in merged}
    assert by_id["jazz"] == prior
    assert by_id["f-Hiking"].strength == pytest.approx(0.3)
    assert by_id["f-Hiking"].horizon == "short"


def test_a_short_interest_passed_over_loses_what_the_new_one_gains() -> None:
    at = T0 + timedelta(days=7)  # 0.6 decays to 0.3
    short, pinned = prior_facet("jazz", (1.0, 0.0)), prior_facet("chess", (-1.0, 0.0), pinned=True)
    news = [new_facet("Hiking", (0.0, 1.0), strength=0.6),
            new_facet("Baking", (0.5, 0.5), strength=0.2, polarity="avoid")]
    by_id = {f.facet_id: f for f in merge_profile([short, pinned], news, at, RULES, new_id)}
    # The strongest new like (0.6) takes displacement (0.5) x 0.6 of the passed-over like;
    # a new avoid takes nothing.
    assert by_id["jazz"].strength == pytest.approx(0.3 * (1 - 0.5 * 0.6))
    assert by_id["jazz"].strength_at == at and by_id["jazz"].reinforcements == 0
    assert by_id["chess"] == pinned
    only_avoid = merge_profile([short], news[1:], at, RULES, new_id)
    assert decayed_strength(only_avoid[0], at, RULES) == pytest.approx(0.3)
    off = DecayRules(displacement=0.0)
    assert merge_profile([short], news, at, off, new_id)[0] == short


def test_displacement_spares_avoids_long_archived_suppressed_and_near_duplicates() -> None:
    at = T0 + timedelta(days=7)  # 0.6 decays to 0.3
    horror = prior_facet("horror", (0.0, -1.0), polarity="avoid")
    lasting = prior_facet("chess", (-1.0, 0.0), horizon="long")
    archived = prior_facet("old", (-0.6, 0.8), archived=True)
    hidden = prior_facet("hidden", (0.6, -0.8), suppressed=True)
    # Two near-duplicate jazz facets: matching pairs the new one with one of them, and the
    # other is not passed over (the refresh backs it too): it only decays.
    jazz_a, jazz_b = prior_facet("jazz-a", (1.0, 0.0)), prior_facet("jazz-b", (0.999, 0.04))
    news = [new_facet("Jazz", (1.0, 0.01), strength=0.9),
            new_facet("Jazz dislikes", (0.0, 1.0), strength=0.9, polarity="avoid")]
    merged = merge_profile([horror, lasting, archived, hidden, jazz_a, jazz_b], news, at,
                           RULES, new_id)
    by_id = {f.facet_id: f for f in merged}
    assert decayed_strength(by_id["horror"], at, RULES) == pytest.approx(0.3)  # a dislike
    assert decayed_strength(by_id["chess"], at, RULES) == pytest.approx(
        0.6 * 0.5 ** (7 / 90))
    assert by_id["old"] == archived and by_id["hidden"] == hidden
    reinforced, spared = sorted([by_id["jazz-a"], by_id["jazz-b"]],
                                key=lambda f: -f.reinforcements)
    assert reinforced.reinforcements == 1
    assert decayed_strength(spared, at, RULES) == pytest.approx(0.3)


def test_a_displaced_facet_fading_below_the_floor_is_archived_in_the_same_refresh() -> None:
    at = T0 + timedelta(days=7)
    faint = prior_facet("faint", (1.0, 0.0), strength=0.12)  # 0.06 after a half-life
    merged = merge_profile([faint], [new_facet("Hiking", (0.0, 1.0), strength=0.9)], at,
                           RULES, new_id)
    kept = next(f for f in merged if f.facet_id == "faint")
    assert kept.archived and kept.strength == pytest.approx(0.06 * (1 - 0.5 * 0.9))


def test_matching_is_one_to_one() -> None:
    merged = merge_profile([prior_facet("jazz", (1.0, 0.0))],
                           [new_facet("Jazz A", (1.0, 0.0)), new_facet("Jazz B", (0.99, 0.01))],
                           T0, RULES, new_id)
    assert sorted(f.facet_id for f in merged) == ["f-Jazz B", "jazz"]


def test_avoid_facets_are_kept_apart_from_likes() -> None:
    merged = merge_profile([prior_facet("horror", (1.0, 0.0))],
                           [new_facet("Horror", (1.0, 0.0), polarity="avoid")], T0, RULES, new_id)
    assert {(f.facet_id, f.polarity) for f in merged} == {("horror", "like"),
                                                           ("f-Horror", "avoid")}


def test_promotion_needs_enough_reinforcements_over_enough_days() -> None:
    facet = prior_facet("jazz", (1.0, 0.0))
    for day in (1, 2, 3):
        facet = merge_profile([facet], [new_facet("jazz", (1.0, 0.0))],
                              T0 + timedelta(days=day), RULES, new_id)[0]
    assert facet.reinforcements == 3 and facet.horizon == "short"  # only 3 days
    facet = merge_profile([facet], [new_facet("jazz", (1.0, 0.0))], T0 + timedelta(days=15),
                          RULES, new_id)[0]
    assert facet.horizon == "long"


def test_faded_facets_are_archived_pinned_are_not() -> None:
    at = T0 + timedelta(days=40)  # 0.6 * 2^(-40/7) ~ 0.011
    merged = merge_profile([prior_facet("old", (1.0, 0.0)),
                            prior_facet("kept", (0.0, 1.0), pinned=True)], [], at, RULES, new_id)
    by_id = {f.facet_id: f for f in merged}
    assert by_id["old"].archived and not by_id["kept"].archived


def test_suppressed_facets_never_come_back() -> None:
    merged = merge_profile([prior_facet("crypto", (1.0, 0.0), suppressed=True)],
                           [new_facet("Crypto coins", (0.97, 0.03))], T0, RULES, new_id)
    assert [f.facet_id for f in merged] == ["crypto"]


# --- properties ----------------------------------------------------------------------

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
vector = st.tuples(st.floats(-1, 1, allow_nan=False), st.floats(-1, 1, allow_nan=False),
                   st.floats(-1, 1, allow_nan=False)).filter(lambda v: cosine(v, v) > 0)
days = st.floats(min_value=0, max_value=400, allow_nan=False)


@st.composite
def priors(draw: st.DrawFn) -> list[ProfileFacet]:
    n = draw(st.integers(0, 5))
    return [prior_facet(f"p{i}", draw(vector), strength=draw(unit),
                        horizon=draw(st.sampled_from(["short", "long"])),
                        polarity=draw(st.sampled_from(["like", "avoid"])),
                        pinned=draw(st.booleans()), suppressed=draw(st.booleans()),
                        reinforcements=draw(st.integers(0, 5)))
            for i in range(n)]


@st.composite
def news(draw: st.DrawFn) -> list[NewFacet]:
    n = draw(st.integers(0, 5))
    return [new_facet(f"n{i}", draw(vector), strength=draw(unit),
                      polarity=draw(st.sampled_from(["like", "avoid"])),
                      evidence=(f"e{i}",)) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(priors(), news(), days)
def test_strengths_stay_in_unit_interval(prior: list[ProfileFacet], new: list[NewFacet],
                                         after: float) -> None:
    at = T0 + timedelta(days=after)
    for f in merge_profile(prior, new, at, RULES, new_id):
        assert 0.0 <= f.strength <= 1.0
        assert 0.0 <= decayed_strength(f, at + timedelta(days=3), RULES) <= 1.0


@settings(max_examples=200, deadline=None)
@given(priors(), days, days)
def test_decay_is_monotone(prior: list[ProfileFacet], a: float, b: float) -> None:
    early, late = sorted((a, b))
    for f in prior:
        assert (decayed_strength(f, T0 + timedelta(days=late), RULES)
                <= decayed_strength(f, T0 + timedelta(days=early), RULES))


@settings(max_examples=200, deadline=None)
@given(priors(), days)
def test_no_new_facets_changes_nothing_but_time(prior: list[ProfileFacet], after: float) -> None:
    at = T0 + timedelta(days=after)
    merged = merge_profile(prior, [], at, RULES, new_id)
    assert len(merged) == len(prior)
    before = {f.facet_id: f for f in prior}
    for f in merged:
        p = before[f.facet_id]
        assert (f.strength, f.strength_at, f.evidence, f.horizon, f.reinforcements) == (
            p.strength, p.strength_at, p.evidence, p.horizon, p.reinforcements)
        # Archival is the only change, and only of what has faded below the floor.
        if f.archived != p.archived:
            assert decayed_strength(p, at, RULES) < RULES.archive_below


@settings(max_examples=200, deadline=None)
@given(priors(), news(), days, st.randoms(use_true_random=False))
def test_input_order_does_not_matter(prior: list[ProfileFacet], new: list[NewFacet],
                                     after: float, rnd: random.Random) -> None:
    at = T0 + timedelta(days=after)
    expected = sorted(merge_profile(prior, new, at, RULES, new_id), key=lambda f: f.facet_id)
    shuffled_prior, shuffled_new = list(prior), list(new)
    rnd.shuffle(shuffled_prior)
    rnd.shuffle(shuffled_new)
    got = sorted(merge_profile(shuffled_prior, shuffled_new, at, RULES, new_id),
                 key=lambda f: f.facet_id)
    assert got == expected
