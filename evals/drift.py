"""Drift tracking of ours on synthetic users: profile versions in, tracking metrics out.

`interest-tracker eval --dataset synthetic` replays every synthetic user through
the service, refreshing every M events; each refresh writes a profile version.
This module turns one user's `GET /v1/users/{id}/profile/history` versions into
the snapshots `evals.tracking` scores, pools the metrics over users and prepares
the facet-timeline plot. Everything here is pure: no service, no model (the
assigner is passed in).

A version becomes the snapshot `(ts, events_seen, like and avoid facets)` with
`ts` the version's time (the replay clock: one second after the last event of the
refreshed chunk), `events_seen` the number of the user's events (held-out ones
included, as the planted truth counts them) before `ts`, and the facets that are
neither archived nor suppressed, with their strength decayed to `ts`. A refresh
that failed wrote no version, so it leaves no snapshot.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from evals.synthetic import PlantedPhase
from evals.tracking import (
    DEFAULT_STRENGTH_FLOOR,
    FacetAssigner,
    FacetView,
    ProfileSnapshot,
    facet_text,
    mean_precision_recall,
    next_period_error,
    snapshot_scores,
    summarize_lags,
    tracking_lag,
)
from evals.types import Interaction

UNASSIGNED = "(no category)"


def _epoch(value: str | datetime) -> int:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return int(when.timestamp())


def timeline_from_versions(versions: Sequence[Mapping[str, Any]],
                           events: Sequence[Interaction]) -> list[ProfileSnapshot]:
    """Snapshots from profile versions as the history endpoint returns them (any order)."""
    times = sorted(e.ts for e in events)
    out: list[ProfileSnapshot] = []
    for version in sorted(versions, key=lambda v: v["version"]):
        ts = _epoch(version["at"])
        facets = [FacetView(facet_text(f["label"], f["description"]), float(f["strength"]),
                            f["polarity"])
                  for f in version["facets"] if not f["archived"] and not f["suppressed"]]
        out.append(ProfileSnapshot(ts, bisect.bisect_left(times, ts), facets))
    return out


def tracking_metrics(timelines: Mapping[str, Sequence[ProfileSnapshot]],
                     truth: Mapping[str, Sequence[PlantedPhase]],
                     events: Mapping[str, Sequence[Interaction]],
                     item_category: Mapping[str, str], assigner: FacetAssigner,
                     period_s: int,
                     strength_floor: float = DEFAULT_STRENGTH_FLOOR) -> dict[str, float]:
    """Pooled over users: lag over every planted change, precision and recall over every
    snapshot, next-period error over every snapshot followed by some activity.

    Keys: `changes`, `share_reached`, `lag_mean`, `lag_median` (events, over reached
    changes), `facet_precision`, `facet_recall`, `snapshots`, `next_period_error`
    (mean total-variation distance), `next_period_snapshots`. A key whose value is
    undefined (no change reached, no snapshot) is left out.
    """
    lags = []
    scores = []
    errors: list[float] = []
    for user, timeline in timelines.items():
        lags.extend(tracking_lag(timeline, truth[user], assigner))
        scores.extend(snapshot_scores(timeline, truth[user], assigner, strength_floor))
        for snapshot in timeline:
            error = next_period_error(snapshot, events[user], item_category, assigner, period_s)
            if error is not None:
                errors.append(error)
    lag = summarize_lags(lags)
    pr = mean_precision_recall(scores)
    values: dict[str, float | None] = {
        "changes": float(lag.changes), "share_reached": lag.share_reached,
        "lag_mean": lag.mean_lag, "lag_median": lag.median_lag,
        "facet_precision": pr.precision, "facet_recall": pr.recall,
        "snapshots": float(pr.snapshots),
        "next_period_error": statistics.fmean(errors) if errors else None,
        "next_period_snapshots": float(len(errors)),
    }
    return {key: value for key, value in values.items() if value is not None}


def category_strengths(timeline: Sequence[ProfileSnapshot], assigner: FacetAssigner,
                       strength_floor: float = 0.0) -> list[tuple[int, dict[str, float]]]:
    """For the facet-timeline plot: per snapshot, the strongest like-facet of each
    category the assigner gives (facets it cannot place go under UNASSIGNED), so the
    lines share names and colours with the planted truth."""
    texts = list(dict.fromkeys(text for _, _, facets in timeline for text, _, _ in facets))
    category_of = dict(zip(texts, assigner.assign(texts), strict=True))
    out = []
    for ts, _, facets in timeline:
        strengths: dict[str, float] = {}
        for text, strength, polarity in facets:
            if polarity != "like" or strength < strength_floor:
                continue
            category = category_of[text] or UNASSIGNED
            strengths[category] = max(strengths.get(category, 0.0), strength)
        out.append((ts, strengths))
    return out


def planted_intervals(phases: Sequence[PlantedPhase]) -> list[tuple[int, int, str]]:
    """(start, end, category) for every category planted in every phase."""
    return [(p.start_ts, p.end_ts, category) for p in phases
            for category, weight in p.categories.items() if weight > 0]
