"""The next-period interest forecast against persistence, on histories with a known truth."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evals.forecast import (
    ForecastPoint,
    forecast_metrics,
    forecast_mixes,
    score_forecasts,
    summarize,
)
from evals.report import RunInfo, write_report
from evals.tracking import KeywordAssigner, actual_mix, mix_mse
from evals.types import Interaction
from service.profiles.forecast import ForecastRules

DAY = 86_400
T0 = 1_704_067_200
WEEK = 7 * DAY
RAMP_DAYS = 28
ASSIGNER = KeywordAssigner({"jazz": ["jazz"], "hiking": ["hiking"]})
CATEGORIES = ["jazz", "hiking"]


def hiking_share(day: float) -> float:
    """The truth: over four weeks the user moves from jazz to hiking, steadily."""
    return min(1.0, max(0.0, day / RAMP_DAYS))


def trending_user() -> tuple[list[Interaction], dict[str, str]]:
    """An event every twelve hours for six weeks, hiking whenever the running sum of the
    planted share passes a whole number, so every week holds its share to one event."""
    events = []
    expected = 0.0
    for k in range(2 * 42):
        before, expected = expected, expected + hiking_share(k / 2)
        topic = "hiking" if int(expected) > int(before) else "jazz"
        events.append(Interaction("u", f"{topic}-{k}", T0 + k * DAY // 2, 5.0, k))
    return events, {e.item: e.item.split("-")[0] for e in events}


def facet(facet_id: str, label: str, strength: float, reinforcements: int,
          **kw: Any) -> dict[str, Any]:
    return {"facet_id": facet_id, "label": label, "description": f"Likes {label}",
            "strength": strength, "horizon": "short", "polarity": "like",
            "reinforcements": reinforcements, "pinned": False, "suppressed": False,
            "archived": False, "evidence": [], **kw}


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def tracking_versions() -> list[dict[str, Any]]:
    """A profile that follows the truth: refreshed every two days, strengths at the
    planted shares, the hiking facet reinforced at every refresh, jazz never again.
    Newest first, as the history endpoint returns them."""
    versions = []
    for n, day in enumerate(range(2, 42, 2)):
        versions.append({
            "version": n + 1, "at": iso(T0 + day * DAY), "trigger": "refresh",
            "first_event_ts": iso(T0),
            "facets": [facet("f-jazz", "jazz", 1 - hiking_share(day), 0),
                       facet("f-hiking", "hiking", hiking_share(day), n)],
        })
    return versions[::-1]


def test_a_perfect_forecast_scores_zero_and_persistence_does_not() -> None:
    events, category = trending_user()
    points = [ForecastPoint(T0 + day * DAY, actual_mix(events, category, T0 + day * DAY + 1,
                                                       T0 + day * DAY + 1 + WEEK))
              for day in (7, 14, 21)]
    scores = score_forecasts(points, events, category, CATEGORIES, WEEK)
    assert len(scores) == 3
    summary = summarize(scores)
    assert summary["forecast_mse"] == 0.0 and summary["forecast_tv"] == 0.0
    assert summary["persistence_mse"] > 0.0 and summary["persistence_tv"] > 0.1
    assert summary["forecast_points"] == 3.0


def test_points_without_a_next_period_are_skipped_and_the_empty_mix_counts_fully() -> None:
    events, category = trending_user()
    end = events[-1].ts
    scores = score_forecasts([ForecastPoint(end + 1, {"jazz": 1.0}),
                              ForecastPoint(T0 + DAY, {})], events, category, CATEGORIES, WEEK)
    assert [s.ts for s in scores] == [T0 + DAY]
    # Nothing predicted: total variation 1, MSE the actual shares squared, averaged.
    actual = actual_mix(events, category, T0 + DAY + 1, T0 + DAY + 1 + WEEK)
    assert scores[0].forecast_tv == 1.0
    assert scores[0].forecast_mse == pytest.approx(
        sum(v * v for v in actual.values()) / len(CATEGORIES))
    assert summarize([]) == {}


def test_mix_mse_is_over_every_category() -> None:
    assert mix_mse({"a": 0.5, "b": 0.5}, {"a": 1.0}) == pytest.approx(0.25)
    assert mix_mse({"a": 0.5, "b": 0.5}, {"a": 1.0}, ["a", "b", "c", "d"]) == pytest.approx(
        0.125)
    assert mix_mse({"a": 2.0}, {"a": 1.0}) == 0.0
    with pytest.raises(ValueError):
        mix_mse({"a": 1.0}, {})


def test_when_interests_trend_the_forecast_beats_persistence() -> None:
    events, category = trending_user()
    versions = tracking_versions()
    ours = forecast_metrics({"u": versions}, {"u": events}, category, CATEGORIES, ASSIGNER,
                            WEEK)
    assert ours["forecast_points"] == 20.0  # every refresh followed by some activity
    assert ours["forecast_mse"] < ours["persistence_mse"] / 2
    assert ours["forecast_tv"] < ours["persistence_tv"] / 2
    # The trend is what helps: the same profile read as it stands (no trend) trails it.
    still = forecast_metrics({"u": versions}, {"u": events}, category, CATEGORIES, ASSIGNER,
                             WEEK, forecast_rules=ForecastRules(damping=0.0))
    assert ours["forecast_tv"] < still["forecast_tv"]
    assert (ours["persistence_tv"], ours["persistence_mse"]) == (
        still["persistence_tv"], still["persistence_mse"])


def test_each_point_sees_only_the_history_up_to_it() -> None:
    versions = tracking_versions()
    points = forecast_mixes(versions, ASSIGNER, WEEK)
    assert [p.ts for p in points] == sorted(T0 + day * DAY for day in range(2, 42, 2))
    early = forecast_mixes([v for v in versions if v["version"] <= 5], ASSIGNER, WEEK)
    assert early == points[:5]
    # The hiking share rises from point to point, ahead of the strengths as they stand.
    shares = [p.mix.get("hiking", 0.0) for p in points]
    assert shares == sorted(shares)
    assert all(p.mix["hiking"] > hiking_share((p.ts - T0) / DAY) for p in points[1:12])


def test_edits_are_not_refresh_points_and_unassigned_or_avoid_facets_are_left_out() -> None:
    versions = [
        {"version": 1, "at": iso(T0 + DAY), "trigger": "refresh", "first_event_ts": iso(T0),
         "facets": [facet("f1", "jazz", 0.6, 0), facet("f2", "chess", 0.9, 0),
                    facet("f3", "hiking", 0.8, 0, polarity="avoid")]},
        {"version": 2, "at": iso(T0 + 2 * DAY), "trigger": "edit", "first_event_ts": None,
         "facets": [facet("f1", "jazz", 0.6, 0, pinned=True)]},
    ]
    [point] = forecast_mixes(versions, ASSIGNER, WEEK)
    assert point == ForecastPoint(T0 + DAY, {"jazz": 1.0})


def _run(tracking: dict[str, Any] | None) -> RunInfo:
    return RunInfo(dataset="synthetic-s1", protocol="leave-last-out", k=10, users=20, seed=1,
                   positive_threshold=3.5, catalog_size=240, interactions=900,
                   train_interactions=880, test_users_available=20, tracking=tracking)


def test_the_report_shows_the_forecast_table_and_metrics_json_keeps_it(tmp_path: Path) -> None:
    tracking = {"seed": 1, "generated_users": 20, "refresh_every": 10, "period_days": 7.0,
                "assign_threshold": 0.4, "strength_floor": 0.1, "timeline_user": "synth-u0000"}
    scores = {"ndcg@10": 0.1, "forecast_mse": 0.0312, "forecast_tv": 0.4123,
              "persistence_mse": 0.0401, "persistence_tv": 0.4501, "forecast_points": 152.0}
    paths = write_report(tmp_path, replace(_run(tracking)), {"ours": scores,
                                                             "most-popular": {"ndcg@10": 0.05}})
    record = json.loads(paths["json"].read_text())
    assert {k: record["models"]["ours"][k] for k in scores} == scores
    assert "forecast_mse" not in record["models"]["most-popular"]
    markdown = paths["markdown"].read_text()
    section = markdown[markdown.index("### Interest forecast: MSE, TV distance, ours vs "
                                      "persistence"):]
    assert "next 7 days" in section and "Persistence predicts" in section
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table[0] == ("| model | forecast_mse | forecast_tv | persistence_mse | "
                        "persistence_tv | forecast_points |")
    assert table[2] == "| ours | 0.0312 | 0.4123 | 0.0401 | 0.4501 | 152 |"
    assert len(table) == 3  # models without forecast numbers are not listed
