"""Next-period interest forecast of ours on synthetic users, beside persistence.

DESIGN.md §7 asks for the next-period interest prediction error. At every refresh
point of a user (a profile version written by a refresh, not by an edit), the
profile history up to that point gives each facet's forecast strength over the
next period (`service.profiles.forecast`: decay plus the damped trend of its
recent reinforcements). The active like-facets' forecasts, summed per planted
category by the same assigner the tracking metrics use (`evals.tracking.
predicted_mix`: label and description, facets it cannot place left out) and
normalised, are the **forecast mix**.

The **real mix** is the share of the user's events per planted category in the
period after the point, `[ts + 1, ts + 1 + period)` as in `next_period_error`.
**Persistence** predicts the period before, `[ts + 1 − period, ts + 1)`: next
period = last period, the baseline a forecast must beat. Both are scored with
the mean squared error over the dataset's categories (`mix_mse`) and the
total-variation distance (`interest_distribution_error`: 0 identical, 1
disjoint; an empty prediction counts 1). Points whose next period holds no event
are skipped; the means pool every scored point of every user.

Everything here is pure: versions in (as `GET /v1/users/{id}/profile/history`
returns them), numbers out; no service, no model (the assigner is passed in).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from evals.tracking import (
    FacetAssigner,
    actual_mix,
    facet_text,
    interest_distribution_error,
    mix_mse,
    predicted_mix,
)
from evals.types import Interaction
from service.profiles.forecast import (
    ForecastRules,
    VersionPoint,
    forecast_profile,
    version_point,
)
from service.profiles.merge import DecayRules

EDIT_TRIGGER = "edit"
DEFAULT_DECAY = DecayRules()  # the service's defaults (DESIGN.md §4)
DEFAULT_FORECAST = ForecastRules()


def _when(value: str | datetime) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ForecastPoint:
    ts: int  # the refresh point, epoch seconds
    mix: dict[str, float]  # category -> share; empty: no assigned like-facet


def forecast_mixes(versions: Sequence[Mapping[str, Any]], assigner: FacetAssigner,
                   period_s: int, rules: DecayRules = DEFAULT_DECAY,
                   forecast_rules: ForecastRules = DEFAULT_FORECAST) -> list[ForecastPoint]:
    """The forecast category mix at every refresh point of one user, oldest first.

    `versions` are one user's profile versions, any order; each point sees only
    the versions up to itself.
    """
    ordered = sorted(versions, key=lambda v: int(v["version"]))
    fr = replace(forecast_rules, period=timedelta(seconds=period_s))
    history: list[VersionPoint] = []
    texts: dict[str, str] = {}
    out: list[ForecastPoint] = []
    for version in ordered:
        at = _when(version["at"])
        read_from = version.get("first_event_ts")
        point = version_point(int(version["version"]), at, version["facets"],
                              _when(read_from) if read_from else None)
        history.append(point)
        texts.update({str(f["facet_id"]): facet_text(f["label"], f["description"])
                      for f in version["facets"]})
        if version.get("trigger") == EDIT_TRIGGER:
            continue
        forecasts = forecast_profile(point.facets, history, at, rules, fr)
        facets = [(texts[f.facet_id], f.forecast, f.polarity) for f in forecasts]
        out.append(ForecastPoint(int(at.timestamp()), predicted_mix(facets, assigner)))
    return out


@dataclass(frozen=True)
class PointScore:
    ts: int
    forecast_mse: float
    forecast_tv: float
    persistence_mse: float
    persistence_tv: float


def score_forecasts(points: Sequence[ForecastPoint], events: Sequence[Interaction],
                    item_category: Mapping[str, str], categories: Sequence[str],
                    period_s: int) -> list[PointScore]:
    """Each point's forecast and persistence against the real next-period mix."""
    out: list[PointScore] = []
    for point in points:
        start = point.ts + 1
        actual = actual_mix(events, item_category, start, start + period_s)
        if not actual:
            continue
        last = actual_mix(events, item_category, start - period_s, start)
        out.append(PointScore(
            ts=point.ts,
            forecast_mse=mix_mse(point.mix, actual, categories),
            forecast_tv=interest_distribution_error(point.mix, actual),
            persistence_mse=mix_mse(last, actual, categories),
            persistence_tv=interest_distribution_error(last, actual),
        ))
    return out


def summarize(scores: Sequence[PointScore]) -> dict[str, float]:
    """Means over the pooled points; empty when there is none."""
    if not scores:
        return {}
    return {
        "forecast_mse": statistics.fmean(s.forecast_mse for s in scores),
        "forecast_tv": statistics.fmean(s.forecast_tv for s in scores),
        "persistence_mse": statistics.fmean(s.persistence_mse for s in scores),
        "persistence_tv": statistics.fmean(s.persistence_tv for s in scores),
        "forecast_points": float(len(scores)),
    }


def forecast_metrics(versions: Mapping[str, Sequence[Mapping[str, Any]]],
                     events: Mapping[str, Sequence[Interaction]],
                     item_category: Mapping[str, str], categories: Sequence[str],
                     assigner: FacetAssigner, period_s: int,
                     rules: DecayRules = DEFAULT_DECAY,
                     forecast_rules: ForecastRules = DEFAULT_FORECAST) -> dict[str, float]:
    """Pooled over users: `forecast_mse`, `forecast_tv`, `persistence_mse`,
    `persistence_tv` and `forecast_points` (the points scored); empty without any.

    `rules` should be the decay rules the profiles were written with (the
    no-decay ablation's half-lives differ), since the forecast reads strengths back
    through them.
    """
    scores: list[PointScore] = []
    for user, user_versions in versions.items():
        points = forecast_mixes(user_versions, assigner, period_s, rules, forecast_rules)
        scores.extend(score_forecasts(points, events[user], item_category, categories,
                                      period_s))
    return summarize(scores)
