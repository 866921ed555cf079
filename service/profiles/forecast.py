"""Where each facet's strength is heading: decay plus trend. No LLM, no I/O.

The profile can say what its interest mix will be over the next period (default
7 days). Each facet is forecast from its own history across profile versions and
the decay rules of `merge.py`; the like-facets' forecasts, normalised, are the mix.

Formula, for one facet at time T over the next P days (all rates per day):

- Decay: λ = ln 2 / H, H the half-life of the facet's horizon; λ = 0 when pinned.
- Hits: the versions that created or reinforced the facet. A hit's gain is what
  the merge added, read back from the versions: g = (s_after − s_before) /
  (1 − s_before), with s_before the previous version's strength decayed to the hit
  (0 at creation). That is the merge's η·n, observed.
- Trend, damped by recency: each hit at age a (days before T) weighs
  w = e^(−a/τ) (τ default 2 days; hits older than `lookback` are not read). The
  reinforcement rate is r = Σw / (τ·(1 − e^(−A/τ))), A = the days of activity the
  versions watched (at least `min_window`); for hits at a steady rate this is that
  rate, and a profile younger than τ is not judged on time it never saw. The
  expected gain is ḡ = Σw·g / Σw, and ρ = φ·r·ḡ (φ default 1).
- Dynamics: ds/dt = −λ·s + ρ·(1 − s), decay plus reinforcement that saturates the
  way the merge does. With k = λ + ρ and s∞ = ρ / k, from s₀ = the strength now,
  s(t) = s∞ + (s₀ − s∞)·e^(−k·t).
- Forecast: the mean of s(t) over the period,
  f = s∞ + (s₀ − s∞)·(1 − e^(−kP)) / (kP)  (f = s₀ when k = 0), in [0, 1].
  Without hits (ρ = 0) this is pure decay, s₀·(1 − e^(−λP)) / (λP).
- trend_per_day = ρ·(1 − s₀): the strength reinforcement is expected to add per
  day now, before decay.
- Mix: each active like-facet's f divided by the sum over them (empty when the
  sum is 0). Avoid-facets are forecast but are not part of the mix.

For a short period this is about the decayed strength at the period's midpoint
plus ρ·(1 − s₀)·P/2; the closed form keeps long periods (up to a year) in [0, 1]
without clipping, since reinforcement saturates and decay never goes below 0.
τ = 2 days was chosen on simulated refreshes of the synthetic drift users (oracle
grouping, the real merge): a longer memory (5–7 days) trails persistence further.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.core.schemas import Horizon, Polarity
from service.profiles.merge import DecayRules, half_life

DAY_S = 86_400.0


@dataclass(frozen=True)
class ForecastRules:
    period: timedelta = timedelta(days=7)
    recency: timedelta = timedelta(days=2)  # tau: a hit's weight is e^(-age / tau)
    lookback: timedelta = timedelta(days=28)  # older hits are not read (weight < 1e-6)
    min_window: timedelta = timedelta(days=1)  # a profile has watched at least this long
    damping: float = 1.0  # phi: share of the recent reinforcement rate expected to go on


@dataclass(frozen=True)
class FacetState:
    """A facet as one profile version recorded it (or as it is now)."""

    facet_id: str
    strength: float  # decayed to the version's time
    horizon: Horizon
    polarity: Polarity
    reinforcements: int
    pinned: bool = False
    active: bool = True  # neither archived nor suppressed


@dataclass(frozen=True)
class VersionPoint:
    """One profile version: when it was written, what it held, what it read from."""

    version: int
    at: datetime
    facets: tuple[FacetState, ...]
    read_from: datetime | None = None  # its first event's time

    def facet(self, facet_id: str) -> FacetState | None:
        return next((f for f in self.facets if f.facet_id == facet_id), None)


@dataclass(frozen=True)
class Hit:
    """A creation or reinforcement of one facet, and the strength gain it brought."""

    at: datetime
    gain: float


@dataclass(frozen=True)
class FacetForecast:
    facet_id: str
    polarity: Polarity
    strength: float  # now
    decayed: float  # mean over the period with decay only
    forecast: float  # mean over the period, decay plus trend
    trend_per_day: float  # rho * (1 - s0)
    hits_per_day: float  # r, recency-weighted
    mean_gain: float  # g-bar, recency-weighted


def facet_state(snapshot: Mapping[str, Any]) -> FacetState:
    """A facet of a version's JSON (`service.snapshot`, or the history endpoint's)."""
    return FacetState(
        facet_id=str(snapshot["facet_id"]), strength=float(snapshot["strength"]),
        horizon="long" if snapshot.get("horizon") == "long" else "short",
        polarity="avoid" if snapshot.get("polarity") == "avoid" else "like",
        reinforcements=int(snapshot.get("reinforcements", 0)),
        pinned=bool(snapshot.get("pinned", False)),
        active=not snapshot.get("archived", False) and not snapshot.get("suppressed", False),
    )


def version_point(version: int, at: datetime, facets: Sequence[Mapping[str, Any]],
                  read_from: datetime | None = None) -> VersionPoint:
    return VersionPoint(version=version, at=at, facets=tuple(facet_state(f) for f in facets),
                        read_from=read_from)


def decay(strength: float, horizon: Horizon, pinned: bool, seconds: float,
          rules: DecayRules) -> float:
    """`merge.decayed_strength` for a recorded strength `seconds` later."""
    if pinned:
        return strength
    factor: float = 2.0 ** (-max(seconds, 0.0) / half_life(horizon, rules).total_seconds())
    return strength * factor


def hits(facet_id: str, history: Sequence[VersionPoint], rules: DecayRules) -> list[Hit]:
    """Every version that created or reinforced the facet, oldest first.

    The history must be contiguous (the newest versions, however many); the oldest
    version given only counts as a creation when it is the profile's first.
    """
    ordered = sorted(history, key=lambda v: v.version)
    out: list[Hit] = []
    previous: FacetState | None = None
    for n, point in enumerate(ordered):
        current = point.facet(facet_id)
        before = ordered[n - 1] if n else None
        if current is not None:
            if previous is None and (before is not None or point.version == 1):
                out.append(Hit(point.at, _clip(current.strength)))
            elif (previous is not None and before is not None
                  and current.reinforcements > previous.reinforcements):
                decayed = decay(previous.strength, previous.horizon, previous.pinned,
                                (point.at - before.at).total_seconds(), rules)
                gain = (current.strength - decayed) / (1.0 - decayed) if decayed < 1.0 else 0.0
                out.append(Hit(point.at, _clip(gain)))
        previous = current
    return out


def observed_since(history: Sequence[VersionPoint]) -> datetime | None:
    """The oldest activity (or version) time these versions watched."""
    times = [min(v.read_from, v.at) if v.read_from else v.at for v in history]
    return min(times, default=None)


def forecast_facet(now: FacetState, facet_hits: Sequence[Hit], at: datetime,
                   watched: timedelta, rules: DecayRules,
                   forecast_rules: ForecastRules) -> FacetForecast:
    """One facet's forecast from its strength now and its hits (see the module docstring)."""
    period_days = forecast_rules.period.total_seconds() / DAY_S
    tau = forecast_rules.recency.total_seconds() / DAY_S
    age_days = max(watched, forecast_rules.min_window).total_seconds() / DAY_S
    weights = [(math.exp(-(at - h.at).total_seconds() / DAY_S / tau), h.gain)
               for h in facet_hits if at - forecast_rules.lookback <= h.at <= at]
    total = sum(w for w, _ in weights)
    rate = total / (tau * -math.expm1(-age_days / tau)) if total > 0 else 0.0
    mean_gain = sum(w * g for w, g in weights) / total if total > 0 else 0.0
    rho = forecast_rules.damping * rate * mean_gain
    decay_rate = 0.0 if now.pinned else (
        math.log(2.0) * DAY_S / half_life(now.horizon, rules).total_seconds())
    s0 = _clip(now.strength)
    return FacetForecast(
        facet_id=now.facet_id, polarity=now.polarity, strength=s0,
        decayed=_period_mean(s0, decay_rate, 0.0, period_days),
        forecast=_period_mean(s0, decay_rate, rho, period_days),
        trend_per_day=rho * (1.0 - s0), hits_per_day=rate, mean_gain=mean_gain,
    )


def forecast_profile(current: Sequence[FacetState], history: Sequence[VersionPoint],
                     at: datetime, rules: DecayRules,
                     forecast_rules: ForecastRules = ForecastRules()) -> list[FacetForecast]:
    """Each active facet's forecast, strongest forecast first (ties by id).

    `current` holds the facets with their strengths decayed to `at`; `history` is
    the profile's newest versions (those after `at` are ignored), reaching back at
    least `lookback` before `at` when the profile is that old.
    """
    past = [v for v in history if v.at <= at]
    watched = at - (observed_since(past) or at)
    out = [forecast_facet(f, hits(f.facet_id, past, rules), at, watched, rules, forecast_rules)
           for f in current if f.active]
    return sorted(out, key=lambda f: (-f.forecast, f.facet_id))


def forecast_mix(forecasts: Sequence[FacetForecast]) -> dict[str, float]:
    """Like-facets' forecast strengths normalised to sum 1, by facet id."""
    likes = {f.facet_id: f.forecast for f in forecasts if f.polarity == "like" and f.forecast > 0}
    total = sum(likes.values())
    return {facet_id: s / total for facet_id, s in likes.items()} if total > 0 else {}


def _period_mean(s0: float, decay_rate: float, rho: float, days: float) -> float:
    """Mean over [0, days] of s(t) under ds/dt = -decay_rate*s + rho*(1 - s)."""
    k = decay_rate + rho
    if k <= 0.0 or days <= 0.0:
        return s0
    limit = rho / k
    x = k * days
    return _clip(limit + (s0 - limit) * (-math.expm1(-x) / x))


def _clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)
