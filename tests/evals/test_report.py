"""The results folder: metrics.json, a report.md with the same numbers, PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.image import imread

from evals.report import RunInfo, plot_facet_timeline, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RESULTS = {
    "popular": {"ndcg@5": 0.0812345, "hr@5": 0.15, "recall@5": 0.1234567, "mrr@5": 0.0654321,
                "coverage": 0.0031, "diversity": 0.55, "novelty": 7.891234, "fit_s": 0.25,
                "ms_per_user": 0.125, "users": 40.0},
    "ours": {"ndcg@5": 0.1023456, "hr@5": 0.2, "recall@5": 0.1876543, "mrr@5": 0.0912345,
             "coverage": 0.2107, "novelty": 10.456789, "fit_s": 12.5, "ms_per_user": 3.75,
             "users": 40.0},
}


def _run(k: int = 5) -> RunInfo:
    return RunInfo(dataset="ml-latest-small", protocol="leave-last-out", k=k, users=40, seed=7,
                   positive_threshold=3.5, catalog_size=9742, interactions=100836,
                   train_interactions=100429, test_users_available=407)


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(path).shape[:2]
    assert height > 100 and width > 100


def _table(markdown: str) -> tuple[list[str], dict[str, list[str]]]:
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    body = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        body[cells[0]] = cells[1:]
    return header[1:], body


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


def test_report_numbers_equal_metrics_json(tmp_path: Path) -> None:
    paths = write_report(tmp_path, _run(), RESULTS)
    record = json.loads(paths["json"].read_text())
    markdown = paths["markdown"].read_text()
    columns, rows = _table(markdown)
    assert columns[:4] == ["ndcg@5", "hr@5", "recall@5", "mrr@5"]
    assert set(rows) == set(record["models"])
    checked = 0
    for model, scores in record["models"].items():
        for column, cell in zip(columns, rows[model], strict=True):
            if column in scores:
                assert float(cell) == pytest.approx(scores[column], abs=5e-5), (model, column)
                checked += 1
            else:
                assert cell == "–"
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
