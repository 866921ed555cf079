"""The results folder of one evaluation run: `metrics.json`, `report.md`, PNG plots.

`metrics.json` is the machine-readable record (DESIGN.md §10 fixes its shape);
`report.md` shows the same numbers side by side for people, with a preamble that says
exactly what was measured; the plots are for skimming.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evals.protocol import VALIDATION
from evals.significance import CONFIDENCE, PAIRED_COLUMNS, RESAMPLES

METRICS_JSON = "metrics.json"
REPORT_MD = "report.md"
METRICS_PNG = "metrics.png"

# Scores in [0, 1] share one axis; novelty is in bits and gets its own.
UNIT_METRICS = ("ndcg", "hr", "recall", "mrr", "coverage", "diversity")
EXTRA_COLUMNS = ("novelty", "fit_s", "ms_per_user")


@dataclass(frozen=True)
class Section:
    """A small table of its own, shown only for the models that report its columns
    (ours: LLM cost, explanation faithfulness); `decimals` per column, else 4."""

    title: str
    columns: tuple[str, ...]
    decimals: Mapping[str, int]
    note: str = ""


COST = Section(
    "LLM cost per refresh",
    ("refreshes", "failed_refreshes", "prompt_tokens_per_refresh", "output_tokens_per_refresh",
     "seconds_per_refresh"),
    {"refreshes": 0, "failed_refreshes": 0, "prompt_tokens_per_refresh": 1,
     "output_tokens_per_refresh": 1, "seconds_per_refresh": 3},
    "Profile refreshes during the replay; a failed refresh (the model wrote nothing usable) "
    "keeps the last good profile. Per-refresh figures divide by all refreshes, failed ones "
    "included: tokens are those recorded on the profile versions written (a failed refresh "
    "records none), seconds are wall time on this machine. The no-LLM ablation spends no "
    "tokens. The LLM variants share one model runtime whose answers are cached (same "
    "prompts, temperature 0): whichever of them runs second reuses the first one's answers, "
    "so its seconds are not model time.")
FAITHFULNESS = Section(
    "Explanation faithfulness",
    ("faithfulness", "recommended_items", "popular_fallback_share", "faithfulness_explained",
     "evidence_exists", "evidence_related"),
    {"recommended_items": 0})
REASON_KINDS = ("facet", "co_occurrence", "transition", "sequence", "content")
REASONS = Section(
    "Explanations by reason kind",
    tuple(f"{prefix}_{kind}" for kind in REASON_KINDS for prefix in ("reason", "faithful")),
    {},
    "reason_<kind>: share of the recommended items whose `because` is of that kind (the "
    "rest are the popular fallback); faithful_<kind>: the faithful share of those items, "
    "as defined above.")
TRACKING = Section(
    "Drift tracking (synthetic users)",
    ("changes", "share_reached", "lag_mean", "lag_median", "facet_precision", "facet_recall",
     "snapshots", "next_period_error", "next_period_snapshots"),
    {"changes": 0, "lag_mean": 2, "lag_median": 1, "snapshots": 0, "next_period_snapshots": 0})
FORECAST = Section(
    "Interest forecast: MSE, TV distance, ours vs persistence",
    ("forecast_mse", "forecast_tv", "persistence_mse", "persistence_tv", "forecast_points"),
    {"forecast_points": 0},
    "At every refresh point, each facet's strength over the next period is forecast from "
    "the profile history up to that point (decay plus the recency-damped trend of its "
    "reinforcements; `service/profiles/forecast.py`) and the like-facets' forecasts, mapped "
    "to the synthetic categories as above, give the forecast mix (`evals/forecast.py`). "
    "Persistence predicts that the next period's mix is the last period's. Both are scored "
    "against the share of the user's events per category in the next period: mean squared "
    "error over the categories and total-variation distance (0 identical, 1 disjoint), "
    "means over the forecast_points followed by some activity.")
LABELS = Section(
    "Facet labels",
    ("facet_labels", "topic_label_share", "title_labels", "year_or_reference_labels"),
    {"facet_labels": 0, "title_labels": 0, "year_or_reference_labels": 0},
    "Every distinct facet label a test user's profile versions held; a topic label is "
    "neither a title of one of the user's items (or part of one), nor holds a year or an "
    "event reference (`evals/labels.py`, the service's own checks).")
SECTIONS = (COST, FAITHFULNESS, REASONS, LABELS, TRACKING, FORECAST)

FacetTimeline = tuple[Sequence[tuple[int, Mapping[str, float]]], Sequence[tuple[int, int, str]]]


@dataclass(frozen=True)
class RunInfo:
    """What was evaluated, so a report can be reproduced from its preamble alone."""

    dataset: str
    protocol: str
    k: int
    users: int  # test users actually scored
    seed: int
    positive_threshold: float
    catalog_size: int
    interactions: int
    train_interactions: int
    test_users_available: int
    test_fraction: float | None = None  # global-time only
    diversity_vectors: str = "multi-hot item genres"
    faithfulness_threshold: float | None = None  # when some model's explanations were scored
    # Synthetic drift tracking, how it was measured: seed, refresh_every, period_days,
    # assign_threshold, strength_floor, timeline_user. None when not measured.
    tracking: Mapping[str, Any] | None = None


def metric_columns(k: int) -> list[str]:
    """Column order of the main table: ranking metrics at K, beyond-accuracy, timing."""
    ranking = [f"{name}@{k}" for name in UNIT_METRICS[:4]]
    return [*ranking, *UNIT_METRICS[4:], *EXTRA_COLUMNS]


def report_columns(k: int) -> list[str]:
    """Every key `metrics.json` keeps per model: the main table's, then each section's."""
    return [*metric_columns(k), *(c for section in SECTIONS for c in section.columns)]


def kept_metrics(results: Mapping[str, Mapping[str, float]],
                 k: int) -> dict[str, dict[str, float]]:
    """Each model's reported metrics, in column order (bookkeeping keys dropped)."""
    columns = report_columns(k)
    return {name: {c: float(scores[c]) for c in columns if c in scores}
            for name, scores in results.items()}


def facet_plot_name(model: str) -> str:
    return f"facets-{model}.png"


def write_report(out_dir: str | Path, run: RunInfo,
                 results: Mapping[str, Mapping[str, float]],
                 facet_timelines: Mapping[str, FacetTimeline] | None = None, *,
                 paired: Mapping[str, Mapping[str, float]] | None = None,
                 reference: str | None = None) -> dict[str, Path]:
    """Write the three outputs, plus one facet-timeline PNG per model in
    `facet_timelines` ((ts, {category: strength}) points, planted intervals); returns
    the paths by kind ("json", "markdown", "plot", "facets-MODEL"). `paired` holds
    `reference` minus each other model, user by user (`evals.significance`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = kept_metrics(results, run.k)
    record: dict[str, object] = {
        "dataset": run.dataset, "protocol": run.protocol, "k": run.k, "users": run.users,
        "seed": run.seed, "positive_threshold": run.positive_threshold,
        "test_fraction": run.test_fraction, "catalog_size": run.catalog_size,
        "interactions": run.interactions, "train_interactions": run.train_interactions,
        "test_users_available": run.test_users_available,
    }
    if run.faithfulness_threshold is not None:
        record["faithfulness_threshold"] = run.faithfulness_threshold
    if run.tracking is not None:
        record["tracking"] = dict(run.tracking)
    record["models"] = models
    if paired and reference is not None:
        record["paired"] = {"reference": reference,
                            "models": {m: dict(row) for m, row in paired.items()}}
    paths = {"json": out / METRICS_JSON, "markdown": out / REPORT_MD, "plot": out / METRICS_PNG}
    timelines = dict(facet_timelines or {})
    for model, (points, planted) in timelines.items():
        paths[f"facets-{model}"] = out / facet_plot_name(model)
        plot_facet_timeline(paths[f"facets-{model}"], points, planted)
    paths["json"].write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    text = _markdown(run, models, list(timelines))
    if paired and reference is not None:
        text += "\n" + paired_table(reference, paired, run.k) + "\n"
    paths["markdown"].write_text(text, encoding="utf-8")
    plot_metrics(paths["plot"], models, run.k)
    return paths


def _markdown(run: RunInfo, models: Mapping[str, Mapping[str, float]],
              timeline_models: Sequence[str] = ()) -> str:
    split = run.protocol
    if run.test_fraction is not None:
        split += f" (last {run.test_fraction:.0%} of interactions by time are the test period)"
    if run.protocol.endswith(VALIDATION):
        split += (" (the validation split: the protocol applied again to the test split's "
                  "training part; no test target is seen)")
    sample = (f"{run.users:,} of {run.test_users_available:,} test users, drawn with seed "
              f"{run.seed}" if run.users < run.test_users_available
              else f"all {run.users:,} test users")
    lines = [
        f"# Offline evaluation: {run.dataset}",
        "",
        f"- Dataset: {run.dataset}: {run.interactions:,} interactions, "
        f"{run.catalog_size:,} catalog items.",
        f"- Split: {split}; {run.train_interactions:,} training interactions. Targets are "
        f"positives only (rating >= {run.positive_threshold:g}, or unrated).",
        f"- Ranking: top {run.k} over the full catalog, the user's consumed items "
        "excluded; no sampled negatives.",
        f"- Users: {sample}.",
        f"- Seeds: user sample and seeded models use {run.seed}.",
        f"- Written: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Definitions: `evals/metrics.py`; "
        f"diversity is over {run.diversity_vectors}; fit_s is seconds to fit, ms_per_user "
        "the mean time per recommendation call.",
        "",
        report_tables(run, models),
        "",
        f"![metrics]({METRICS_PNG})",
        "",
    ]
    user = (run.tracking or {}).get("timeline_user")
    for model in timeline_models:
        lines += [f"![{model}: facet strengths of {user} against the planted interests]"
                  f"({facet_plot_name(model)})", ""]
    return "\n".join(lines)


def paired_table(reference: str, paired: Mapping[str, Mapping[str, float]], k: int) -> str:
    """The section comparing `reference` with every other model, user by user."""
    lines = [
        f"### {reference} against each model, user by user",
        "",
        f"Per test user, {reference}'s NDCG@{k} (HR@{k}) minus the model's: the mean "
        f"difference and a {CONFIDENCE:.0%} percentile-bootstrap interval of it "
        f"({RESAMPLES:,} resamples of the users, `evals/significance.py`); better / worse "
        f"count the users for whom {reference}'s NDCG@{k} is higher / lower. An interval "
        "that contains 0 means this run cannot tell the two apart.",
        "",
        _table(paired, PAIRED_COLUMNS, {"better": 0, "worse": 0}),
    ]
    return "\n".join(lines)


def report_tables(run: RunInfo, models: Mapping[str, Mapping[str, float]]) -> str:
    """The tables of report.md, as the command line also prints them."""
    return markdown_tables(models, run.k, _notes(run))


def _notes(run: RunInfo) -> dict[str, str]:
    """Section notes that depend on the run."""
    notes = {}
    if run.tracking is not None:
        notes[TRACKING.title] = _tracking_note(run.tracking)
        notes[FORECAST.title] = FORECAST.note.replace(
            "the next period", f"the next {run.tracking['period_days']:g} days", 1)
    if run.faithfulness_threshold is None:
        return notes
    return notes | {FAITHFULNESS.title: (
        "Over every recommended item (each test user's top K): an item is faithful when it "
        "has a `because` whose cited evidence events are all events the replay sent for that "
        "user, about the same item (evidence_exists), and whose lead cited item, the one the "
        "explanation names first, is related to the recommended item (evidence_related): "
        f"MiniLM cosine similarity of their texts >= {run.faithfulness_threshold:g}. The "
        "threshold is calibrated on ml-latest-small, where 21% of random movie pairs and 73% "
        "of same-genre-set pairs reach 0.5 (`evals/faithfulness.py`). The service gives, among "
        "an item's grounded reasons, the one whose lead cited item is most related to it (on "
        "its own vectors of the items), so the test is generous: 21% is a floor on what "
        "chance gives, not the chance level. Popular-fallback items "
        "(no `because`) are never faithful, so faithfulness <= 1 - popular_fallback_share; "
        "faithfulness_explained is faithful items over the explained ones.")}


def _tracking_note(t: Mapping[str, Any]) -> str:
    return (
        "Synthetic users whose planted interests change at known times "
        f"(`evals/synthetic.py`, seed {t['seed']}). Each user's whole training "
        f"history is replayed with a profile refresh every {t['refresh_every']} "
        "events; every profile version (GET /v1/users/{id}/profile/history) is a snapshot, "
        "facets mapped to the synthetic categories by MiniLM similarity of their label and "
        "description to the category descriptions (>= "
        f"{t['assign_threshold']}; `evals/tracking.py`). changes: planted changes "
        "scored; lag: events after a change until the new phase's main category is the "
        "strongest like-facet, over the share_reached changes (a change not reached within "
        "its phase is censored: it lowers share_reached, not lag_mean). facet_precision / "
        "facet_recall: per snapshot, like-facets with strength >= "
        f"{t['strength_floor']} against the current phase's planted categories, "
        "mean over snapshots. next_period_error: total-variation distance between the "
        "profile's category mix (like-facet strengths per category) and the user's events "
        f"in the next {t['period_days']:g} days (0 identical, 1 disjoint), mean over "
        "the next_period_snapshots followed by some activity.")


def markdown_table(models: Mapping[str, Mapping[str, float]], k: int) -> str:
    """Every model side by side, one row each; a metric a model lacks shows as a dash."""
    return _table(models, metric_columns(k), {})


def markdown_tables(models: Mapping[str, Mapping[str, float]], k: int,
                    notes: Mapping[str, str] | None = None) -> str:
    """The main table, then one small titled table per section some model reports."""
    parts = [markdown_table(models, k)]
    for section in SECTIONS:
        having = {name: scores for name, scores in models.items()
                  if any(c in scores for c in section.columns)}
        if not having:
            continue
        note = (notes or {}).get(section.title, section.note)
        parts.append(f"### {section.title}\n\n" + (f"{note}\n\n" if note else "")
                     + _table(having, list(section.columns), section.decimals))
    return "\n\n".join(parts)


def _table(models: Mapping[str, Mapping[str, float]], columns: Sequence[str],
           decimals: Mapping[str, int]) -> str:
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, scores in models.items():
        cells = [_cell(scores.get(c), decimals.get(c, 4)) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None, decimals: int = 4) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def plot_metrics(path: str | Path, models: Mapping[str, Mapping[str, float]], k: int) -> None:
    """Grouped bars: one group per metric, one bar per model; novelty on its own axis."""
    unit = [c for c in metric_columns(k)[:len(UNIT_METRICS)]
            if any(c in scores for scores in models.values())]
    names = list(models)
    fig = _figure((11, 4.5))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(len(unit), 1), 1.4]})
    width = 0.8 / max(len(names), 1)
    for n, name in enumerate(names):
        offsets = np.arange(len(unit)) + (n - (len(names) - 1) / 2) * width
        # A metric a model lacks gets no bar (NaN), not a misleading zero.
        left.bar(offsets, [models[name].get(c, np.nan) for c in unit], width, label=name)
        right.bar([(n - (len(names) - 1) / 2) * width], [models[name].get("novelty", np.nan)],
                  width)
    left.set_xticks(np.arange(len(unit)), unit)
    left.set_ylabel("score")
    left.set_ylim(0, 1)
    left.set_title(f"Ranking and beyond-accuracy metrics (K={k})")
    right.set_xticks([0], ["novelty"])
    right.set_ylabel("bits")
    right.set_title("Novelty")
    if names:
        left.legend(fontsize="small", ncols=min(len(names), 4))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_facet_timeline(path: str | Path,
                        timeline: Sequence[tuple[int, Mapping[str, float]]],
                        planted: Sequence[tuple[int, int, str]]) -> None:
    """One user's facet strengths over time against the interests planted in them.

    `timeline` is (ts, {facet label: strength}) snapshots; `planted` is
    (start_ts, end_ts, label) intervals of the synthetic truth, drawn as one track per
    label under the strengths. Each label keeps one colour in both panels, so lag
    between a planted start and the rising line is visible by eye.
    """
    labels = sorted({label for _, strengths in timeline for label in strengths}
                    | {label for _, _, label in planted})
    colours = {label: colormaps["tab10"](n % 10) for n, label in enumerate(labels)}
    fig = _figure((10, 5.5))
    strength_ax, truth_ax = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 0.4 + 0.3 * max(len(labels), 1)]})
    snapshots = sorted(timeline, key=lambda point: point[0])
    times = [_when(ts) for ts, _ in snapshots]
    for label in labels:
        if any(label in strengths for _, strengths in snapshots):
            strength_ax.plot(times, [s.get(label, 0.0) for _, s in snapshots],
                             color=colours[label], marker=".", label=label)
    strength_ax.set_ylabel("facet strength")
    strength_ax.set_title("Tracked facet strengths (top) against planted interests (bottom)")
    if snapshots:
        strength_ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for row, label in enumerate(labels):
        for start, end, planted_label in planted:
            if planted_label == label:
                truth_ax.barh(row, _when(end) - _when(start), left=_when(start), height=0.6,
                              color=colours[label])
    truth_ax.set_yticks(range(len(labels)), labels, fontsize="small")
    truth_ax.set_ylim(-0.5, max(len(labels), 1) - 0.5)
    truth_ax.invert_yaxis()
    truth_ax.set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _figure(size: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas: no pyplot, no global backend, no display needed."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _when(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
