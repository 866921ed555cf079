"""The results folder: metrics.json, a report.md with the same numbers, PNG plots."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from matplotlib.image import imread

from evals.report import RunInfo, plot_facet_timeline, write_report
from tests.utils.evals import cell_tolerance
from tests.utils.evals import markdown_tables as _tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RESULTS = {
    "popular": {"ndcg@5": 0.0812345, "hr@5": 0.15, "recall@5": 0.1234567, "mrr@5": 0.0654321,
                "coverage": 0.0031, "diversity": 0.55, "novelty": 7.891234, "fit_s": 0.25,
                "ms_per_user": 0.125, "users": 40.0},
    "ours": {"ndcg@5": 0.1023456, "hr@5": 0.2, "recall@5": 0.1876543, "mrr@5": 0.0912345,
             "coverage": 0.2107, "novelty": 10.456789, "fit_s": 12.5, "ms_per_user": 3.75,
             "users": 40.0,
             # what OursRecommender.cost() adds
             "refreshes": 80.0, "failed_refreshes": 3.0, "prompt_tokens_per_refresh": 612.4375,
             "output_tokens_per_refresh": 88.0125, "seconds_per_refresh": 41.23456,
             # what OursRecommender.faithfulness() adds
             "faithfulness": 0.55, "recommended_items": 200.0, "popular_fallback_share": 0.2,
             "faithfulness_explained": 0.6875, "evidence_exists": 0.8, "evidence_related": 0.55},
}
FAITHFULNESS_KEYS = ("faithfulness", "recommended_items", "popular_fallback_share",
                     "faithfulness_explained", "evidence_exists", "evidence_related")
COST_KEYS = ("refreshes", "failed_refreshes", "prompt_tokens_per_refresh",
             "output_tokens_per_refresh", "seconds_per_refresh")


def _run(k: int = 5) -> RunInfo:
    return RunInfo(dataset="ml-latest-small", protocol="leave-last-out", k=k, users=40, seed=7,
                   positive_threshold=3.5, catalog_size=9742, interactions=100836,
                   train_interactions=100429, test_users_available=407)


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(path).shape[:2]
    assert height > 100 and width > 100


def _table(markdown: str) -> tuple[list[str], dict[str, list[str]]]:
    return _tables(markdown)[0]


def test_three_outputs_are_written(tmp_path: Path) -> None:
    paths = write_report(tmp_path / "out", _run(), RESULTS)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "metrics.json", "report.md", "metrics.png"}
    assert set(paths.values()) == set((tmp_path / "out").iterdir())
    _assert_png(paths["plot"])

    record = json.loads(paths["json"].read_text())
    assert {k: record[k] for k in ("dataset", "protocol", "k", "users", "seed")} == {
        "dataset": "ml-latest-small", "protocol": "leave-last-out", "k": 5, "users": 40,
        "seed": 7}
    assert list(record["models"]) == ["popular", "ours"]
    assert {"ndcg@5", "hr@5", "recall@5", "mrr@5", "coverage", "diversity", "novelty"} <= set(
        record["models"]["popular"])
    assert "diversity" not in record["models"]["ours"]
    assert record["models"]["ours"]["ndcg@5"] == RESULTS["ours"]["ndcg@5"]
    # The cost keys of ours survive, at full precision, flat beside the other metrics.
    assert {k: record["models"]["ours"][k] for k in COST_KEYS} == {
        k: RESULTS["ours"][k] for k in COST_KEYS}
    assert not set(COST_KEYS) & set(record["models"]["popular"])
    assert "users" not in record["models"]["ours"]  # bookkeeping, stated in the preamble


def test_cost_table_lists_only_the_models_that_have_costs(tmp_path: Path) -> None:
    markdown = write_report(tmp_path, _run(), RESULTS)["markdown"].read_text()
    assert "### LLM cost per refresh" in markdown
    main, cost, _ = _tables(markdown)
    assert not set(COST_KEYS) & set(main[0])
    columns, rows = cost
    assert columns == list(COST_KEYS)
    assert list(rows) == ["ours"]
    assert rows["ours"] == ["80", "3", "612.4", "88.0", "41.235"]
    # Without a model that reports costs there is no cost section at all.
    baselines_only = {"popular": RESULTS["popular"]}
    text = write_report(tmp_path / "b", _run(), baselines_only)["markdown"].read_text()
    assert "LLM cost" not in text and len(_tables(text)) == 1


def test_faithfulness_is_kept_and_shown_with_its_threshold(tmp_path: Path) -> None:
    run = replace(_run(), faithfulness_threshold=0.5)
    paths = write_report(tmp_path, run, RESULTS)
    record = json.loads(paths["json"].read_text())
    assert record["faithfulness_threshold"] == 0.5
    assert {k: record["models"]["ours"][k] for k in FAITHFULNESS_KEYS} == {
        k: RESULTS["ours"][k] for k in FAITHFULNESS_KEYS}
    markdown = paths["markdown"].read_text()
    section = markdown[markdown.index("### Explanation faithfulness"):]
    assert ">= 0.5" in section and "popular_fallback_share" in section
    columns, rows = _tables(markdown)[2]
    assert columns == list(FAITHFULNESS_KEYS) and list(rows) == ["ours"]
    assert rows["ours"] == ["0.5500", "200", "0.2000", "0.6875", "0.8000", "0.5500"]
    # A run that scored no explanations states no threshold.
    assert "faithfulness_threshold" not in json.loads(
        write_report(tmp_path / "b", _run(), RESULTS)["json"].read_text())


def test_report_numbers_equal_metrics_json(tmp_path: Path) -> None:
    paths = write_report(tmp_path, _run(), RESULTS)
    record = json.loads(paths["json"].read_text())
    markdown = paths["markdown"].read_text()
    tables = _tables(markdown)
    columns, rows = tables[0]
    assert columns[:4] == ["ndcg@5", "hr@5", "recall@5", "mrr@5"]
    assert set(rows) == set(record["models"])
    checked = 0
    for columns, rows in tables:
        for model, cells in rows.items():
            scores = record["models"][model]
            for column, cell in zip(columns, cells, strict=True):
                if column in scores:
                    assert float(cell) == pytest.approx(
                        scores[column], abs=cell_tolerance(cell)), (model, column)
                    checked += 1
                else:
                    assert cell == "–"
    # Every number in metrics.json is shown exactly once.
    assert checked == sum(len(s) for s in record["models"].values())


def test_report_preamble_says_what_was_measured(tmp_path: Path) -> None:
    markdown = write_report(tmp_path, _run(k=20), {"ours": {"ndcg@20": 0.5}})["markdown"]
    text = markdown.read_text()
    for fact in ("ml-latest-small", "leave-last-out", "top 20", "40 of 407 test users",
                 "seed 7", "3.5", "full catalog"):
        assert fact in text
    assert "ndcg@20" in _table(text)[0]


def test_facet_timeline_plot(tmp_path: Path) -> None:
    day = 86_400
    timeline = [(n * day, {"jazz": max(0.0, 1 - n / 10), "hiking": min(1.0, n / 10)})
                for n in range(0, 30, 3)]
    planted = [(0, 10 * day, "jazz"), (8 * day, 30 * day, "hiking"), (20 * day, 30 * day, "go")]
    path = tmp_path / "facets.png"
    plot_facet_timeline(path, timeline, planted)
    _assert_png(path)


def test_tracking_section_and_facet_timelines(tmp_path: Path) -> None:
    tracking = {"seed": 1, "generated_users": 20, "refresh_every": 10, "period_days": 7.0,
                "assign_threshold": 0.4, "strength_floor": 0.1, "timeline_user": "synth-u0000"}
    scores = {**RESULTS["ours"], "changes": 31.0, "share_reached": 0.8064516,
              "lag_mean": 9.24, "lag_median": 8.0, "facet_precision": 0.7712,
              "facet_recall": 0.9, "snapshots": 120.0, "next_period_error": 0.4321,
              "next_period_snapshots": 118.0}
    timeline = ([(0, {"chess": 0.5}), (86_400, {"chess": 0.2, "baking": 0.6})],
                [(0, 50_000, "chess"), (50_000, 90_000, "baking")])
    paths = write_report(tmp_path, replace(_run(), tracking=tracking), {"ours": scores},
                         {"ours": timeline})
    _assert_png(paths["facets-ours"])
    assert paths["facets-ours"].name == "facets-ours.png"
    record = json.loads(paths["json"].read_text())
    assert record["tracking"] == tracking and record["models"]["ours"]["lag_mean"] == 9.24
    markdown = paths["markdown"].read_text()
    assert "(facets-ours.png)" in markdown and "synth-u0000" in markdown
    section = markdown[markdown.index("### Drift tracking"):]
    assert "every 10 events" in section and "next 7 days" in section and ">= 0.4" in section
    columns, rows = _tables(markdown)[-1]
    assert columns[:4] == ["changes", "share_reached", "lag_mean", "lag_median"]
    assert rows["ours"][:4] == ["31", "0.8065", "9.24", "8.0"]
