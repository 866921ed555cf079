"""Drift tracking from profile versions: scripted profiles whose answers are known."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from evals.drift import (
    UNASSIGNED,
    category_strengths,
    planted_intervals,
    timeline_from_versions,
    tracking_metrics,
)
from evals.synthetic import PlantedPhase, SyntheticData, generate, user_events
from evals.tracking import KeywordAssigner
from evals.types import Interaction

WEEK = 7 * 86_400


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(6, seed=3)


@pytest.fixture(scope="module")
def assigner(data: SyntheticData) -> KeywordAssigner:
    """A facet belongs to the category whose name it contains (no model needed)."""
    return KeywordAssigner({name: [name] for name in data.categories})


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def facet(label: str, strength: float, polarity: str = "like", **flags: bool) -> dict[str, Any]:
    return {"label": label, "description": "", "strength": strength, "polarity": polarity,
            "archived": flags.get("archived", False), "suppressed": flags.get("suppressed", False)}


Script = Callable[[Sequence[PlantedPhase], int], list[dict[str, Any]]]


def versions(events: Sequence[Interaction], phases: Sequence[PlantedPhase],
             script: Script, every: int = 1) -> list[dict[str, Any]]:
    """What the history endpoint would return for a replay that refreshes after every
    `every` events; the script writes the facets from the number of events read.
    Newest first, as the endpoint sends them."""
    out = []
    for n, end in enumerate(range(every, len(events) + 1, every), start=1):
        out.append({"version": n, "at": iso(events[end - 1].ts + 1),
                    "facets": script(phases, end)})
    return out[::-1]


def phase_after(phases: Sequence[PlantedPhase], seen: int) -> PlantedPhase:
    return [p for p in phases if p.start_event < seen][-1]


def following(delay: int = 0) -> Script:
    """Facets that mirror the planted mix of the phase the user was in `delay` events ago."""
    def script(phases: Sequence[PlantedPhase], seen: int) -> list[dict[str, Any]]:
        phase = phase_after(phases, max(seen - delay, 1))
        return [facet(f"{c} enthusiast", w) for c, w in phase.categories.items()]
    return script


def frozen(phases: Sequence[PlantedPhase], seen: int) -> list[dict[str, Any]]:
    """Never notices a change: always the first phase's main interest."""
    return [facet(f"{phases[0].main} enthusiast", 0.9)]


def score(data: SyntheticData, assigner: KeywordAssigner, script: Script,
          every: int = 1) -> dict[str, float]:
    events = user_events(data)
    timelines = {u: timeline_from_versions(versions(events[u], data.truth[u], script, every),
                                           events[u]) for u in data.truth}
    return tracking_metrics(timelines, data.truth, events, data.item_category, assigner, WEEK)


def test_a_profile_that_follows_the_truth_has_the_least_lag_and_full_precision(
        data: SyntheticData, assigner: KeywordAssigner) -> None:
    result = score(data, assigner, following())
    changes = sum(len(p) - 1 for p in data.truth.values())
    assert result["changes"] == changes > 0
    assert result["share_reached"] == 1.0
    # Refreshed after every event, it needs exactly the first event of the new phase.
    assert result["lag_mean"] == 1.0 and result["lag_median"] == 1.0
    assert result["facet_precision"] == 1.0 and result["facet_recall"] == 1.0
    assert result["snapshots"] == sum(len(e) for e in user_events(data).values())


def test_a_late_profile_lags_by_its_delay(data: SyntheticData, assigner: KeywordAssigner) -> None:
    result = score(data, assigner, following(delay=4))
    assert result["share_reached"] == 1.0 and result["lag_mean"] == 5.0
    assert result["facet_precision"] < 1.0
    # Refreshing every 5 events, the change shows at the first refresh that read it.
    sparse = score(data, assigner, following(), every=5)
    expected = [-(-(p.start_event + 1) // 5) * 5 - p.start_event
                for phases in data.truth.values() for p in phases[1:]]
    assert sparse["lag_mean"] == pytest.approx(sum(expected) / len(expected))
    assert max(expected) > 1 and sparse["facet_precision"] == 1.0


def test_a_profile_that_never_changes_reaches_no_change(
        data: SyntheticData, assigner: KeywordAssigner) -> None:
    stale = score(data, assigner, frozen)
    good = score(data, assigner, following())
    assert stale["changes"] == good["changes"] and stale["share_reached"] == 0.0
    assert "lag_mean" not in stale and "lag_median" not in stale  # every change censored
    assert stale["facet_precision"] < 0.7 < good["facet_precision"]
    assert stale["facet_recall"] < good["facet_recall"]
    assert good["next_period_error"] < 0.35 < stale["next_period_error"]


def test_versions_become_snapshots_in_order_without_hidden_facets() -> None:
    events = [Interaction("u", f"i{n}", 1_000 + 3_600 * n) for n in range(5)]
    history = [
        {"version": 2, "at": iso(events[3].ts + 1), "facets": [
            facet("jazz", 0.5), facet("chess", 0.9, archived=True),
            facet("baking", 0.9, suppressed=True), facet("knitting", 0.2, "avoid")]},
        {"version": 1, "at": iso(events[1].ts + 1), "facets": [facet("jazz", 0.8)]},
    ]
    timeline = timeline_from_versions(history, events)
    assert [(s.ts, s.events_seen) for s in timeline] == [(events[1].ts + 1, 2),
                                                         (events[3].ts + 1, 4)]
    assert [(text, strength, polarity) for text, strength, polarity in timeline[1].facets] == [
        ("jazz", 0.5, "like"), ("knitting", 0.2, "avoid")]


def test_plot_points_follow_categories_and_truth_intervals(assigner: KeywordAssigner) -> None:
    timeline = timeline_from_versions([{"version": 1, "at": iso(10), "facets": [
        facet("chess openings", 0.3), facet("chess endgames", 0.6), facet("sailing", 0.4),
        facet("baking", 0.9, "avoid")]}], [])
    assert category_strengths(timeline, assigner) == [(10, {"chess": 0.6, UNASSIGNED: 0.4})]
    phases = [PlantedPhase(0, 5, {"chess": 1.0}, 0),
              PlantedPhase(5, 9, {"baking": 0.7, "chess": 0.3}, 3)]
    assert planted_intervals(phases) == [(0, 5, "chess"), (5, 9, "baking"), (5, 9, "chess")]
