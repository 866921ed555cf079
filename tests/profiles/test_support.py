"""A model facet's strength is floored by what its cited evidence supports."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from service.ingest.models import Event
from service.profiles.service import SUPPORT_FULL, evidence_support, new_facets
from service.summaries.activity import Activity
from service.summaries.schemas import InterestSummary


def ev(pk: int, type_: str, value: float | None = None) -> Event:
    return Event(id=pk, event_id=f"e{pk}", type=type_, value=value, item_id=f"i{pk}")


class FlatEmbedder:
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0, 0.0] for _ in texts]


def test_agreeing_ratings_give_full_support_at_the_stated_count() -> None:
    fives = [ev(i, "rating", 5.0) for i in range(int(SUPPORT_FULL))]
    assert evidence_support(fives, "like", 5.0) == 1.0
    assert evidence_support(fives[:2], "like", 5.0) == pytest.approx(2 / SUPPORT_FULL)
    # 3.5/5 is the positive boundary; 3.0 is neither a like nor (above 2.5) an avoid.
    assert evidence_support([ev(1, "rating", 3.5)], "like", 5.0) == pytest.approx(0.2)
    assert evidence_support([ev(1, "rating", 3.0)], "like", 5.0) == 0.0
    assert evidence_support([ev(1, "rating", 3.0)], "avoid", 5.0) == 0.0


def test_contradicting_evidence_supports_nothing() -> None:
    lows = [ev(i, "rating", 1.0) for i in range(6)] + [ev(9, "dislike"), ev(10, "skip")]
    assert evidence_support(lows, "like", 5.0) == 0.0
    assert evidence_support(lows, "avoid", 5.0) == 1.0
    views = [ev(i, "view") for i in range(4)]
    assert evidence_support(views, "like", 5.0) == pytest.approx(2 / SUPPORT_FULL)
    assert evidence_support(views, "avoid", 5.0) == 0.0


def summary(strength: float, evidence: list[str], polarity: str = "like") -> InterestSummary:
    return InterestSummary.model_validate({"facets": [{
        "label": "Animated adventures", "description": "Family animation.",
        "strength": strength, "polarity": polarity, "evidence": evidence}]})


def test_new_facets_raise_an_uncalibrated_model_strength_to_the_evidence() -> None:
    events = [ev(i, "rating", 4.5) for i in range(1, 7)]
    activity = Activity(text="", events=events)
    # The 135M model's answer for six 4.5-star ratings: strength 0.0.
    [facet] = new_facets(summary(0.0, [e.event_id for e in events]), activity, 0,
                         FlatEmbedder(), 5.0)
    assert facet.strength == 1.0
    # A higher model number stands; weak evidence does not lower it.
    [facet] = new_facets(summary(0.9, ["e1"]), activity, 0, FlatEmbedder(), 5.0)
    assert facet.strength == 0.9
    # A like facet citing low ratings keeps the model's number: no support.
    lows = [ev(i, "rating", 1.0) for i in range(1, 4)]
    [facet] = new_facets(summary(0.1, ["e1", "e2", "e3"]), Activity(text="", events=lows), 0,
                         FlatEmbedder(), 5.0)
    assert facet.strength == 0.1


def test_support_counts_only_events_the_activity_holds() -> None:
    events = [ev(1, "rating", 5.0)]
    [facet] = new_facets(summary(0.0, ["e1", "e77", "e78"]), Activity(text="", events=events), 0,
                         FlatEmbedder(), 5.0)
    assert facet.strength == pytest.approx(1 / SUPPORT_FULL)
