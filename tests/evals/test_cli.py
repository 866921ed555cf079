"""`eval` end to end on a tiny JSONL set with the seeded random model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from evals.cli import add_eval_parser, run_eval
from tests.utils.evals import cell_tolerance, markdown_tables, write_jsonl


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interest-tracker")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    items = write_jsonl(tmp_path / "items.jsonl", [
        {"item_id": f"i{n}", "title": f"Item {n}", "category": ["even", "odd"][n % 2]}
        for n in range(12)])
    rows = []
    for user in range(6):
        for step in range(5):
            rows.append({"user_id": f"u{user}", "item_id": f"i{(user + 2 * step) % 12}",
                           "ts": 1_700_000_000 + 3600 * (step * 6 + user), "rating": 4})
    events = write_jsonl(tmp_path / "events.jsonl", rows)
    return events, items


def _eval(tiny: tuple[Path, Path], out: Path, *extra: str) -> int:
    events, items = tiny
    args = _parser().parse_args(["eval", "--dataset", "jsonl", "--events", str(events),
                                 "--items", str(items), "--out", str(out), "--no-progress",
                                 *extra])
    return int(args.func(args))


def test_eval_end_to_end_writes_the_results_folder(tiny: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    assert _eval(tiny, out, "--models", "random", "--k", "3", "--users", "4", "--seed", "5") == 0
    record = json.loads((out / "metrics.json").read_text())
    assert (record["dataset"], record["protocol"], record["k"]) == ("events", "leave-last-out", 3)
    assert (record["users"], record["seed"], record["test_users_available"]) == (4, 5, 6)
    assert list(record["models"]) == ["random"]
    scores = record["models"]["random"]
    for key in ("ndcg@3", "hr@3", "recall@3", "mrr@3", "coverage", "diversity"):
        assert 0.0 <= scores[key] <= 1.0
    assert scores["novelty"] > 0
    assert (out / "report.md").read_text().count("| random |") == 1
    assert (out / "metrics.png").stat().st_size > 0
    assert "| random |" in capsys.readouterr().out

    again = tmp_path / "again"
    assert _eval(tiny, again, "--models", "random", "--k", "3", "--users", "4", "--seed", "5") == 0
    rerun = json.loads((again / "metrics.json").read_text())["models"]["random"]
    assert {k: v for k, v in rerun.items() if k not in ("fit_s", "ms_per_user")} == {
        k: v for k, v in scores.items() if k not in ("fit_s", "ms_per_user")}


def test_eval_global_time_protocol(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "global"
    assert _eval(tiny, out, "--protocol", "global-time", "--test-fraction", "0.4") == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["protocol"] == "global-time" and record["test_fraction"] == 0.4
    assert record["k"] == 10 and "random" in record["models"]
    assert record["train_interactions"] == 18  # 60% of the 30 events, all distinct times


@pytest.mark.parametrize(("argv", "message"), [
    (["--models", "random,nope"], "unknown model(s) nope"),
    (["--k", "0"], "--k must be at least 1"),
    (["--users", "0"], "--users must be at least 1"),
    (["--sequence-epochs", "-1"], "--sequence-epochs must be 0 or more"),
])
def test_eval_usage_errors_exit_2(tiny: tuple[Path, Path], tmp_path: Path, argv: list[str],
                                  message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _eval(tiny, tmp_path / "out", *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_jsonl_needs_both_files_and_bad_data_is_reported(
        tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    args = parser.parse_args(["eval", "--dataset", "jsonl", "--events", str(tiny[0])])
    assert run_eval(args) == 2
    assert "--events and --items" in capsys.readouterr().err
    tiny[0].write_text(tiny[0].read_text() + "{broken\n")
    assert _eval(tiny, tmp_path / "out") == 2
    assert "events.jsonl:31: invalid JSON" in capsys.readouterr().err


def test_eval_defaults() -> None:
    args = _parser().parse_args(["eval"])
    assert (args.dataset, args.protocol, args.k, args.seed) == (
        "ml-latest-small", "leave-last-out", 10, 0)
    assert args.positive_threshold == 3.5 and args.users is None and args.func is run_eval
    assert args.replay_last is None and args.period_days == 7.0  # 40 unless synthetic
    with pytest.raises(SystemExit):
        _parser().parse_args(["eval", "--dataset", "ml-1m"])


def test_synthetic_baselines_only_get_ranking_metrics_and_a_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synthetic"
    args = _parser().parse_args(["eval", "--dataset", "synthetic", "--users", "3", "--models",
                                 "random", "--out", str(out), "--no-progress"])
    assert args.func(args) == 0
    assert "drift tracking needs an ours model" in capsys.readouterr().err
    record = json.loads((out / "metrics.json").read_text())
    assert record["dataset"] == "synthetic-s0" and "tracking" not in record
    assert "changes" not in record["models"]["random"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.png", "report.md"]


@pytest.mark.slow
def test_synthetic_drift_tracking_of_the_no_llm_ablation_end_to_end(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real MiniLM and Chroma, no LLM: two generated users replayed with a refresh every
    15 events; the outputs exist and agree with what the command printed."""
    out = tmp_path / "synthetic"
    args = _parser().parse_args([
        "eval", "--dataset", "synthetic", "--users", "2", "--seed", "1", "--k", "5",
        "--models", "ours-template-names", "--refresh-every", "15", "--out", str(out),
        "--no-progress"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out

    record = json.loads((out / "metrics.json").read_text())
    assert record["dataset"] == "synthetic-s1" and record["faithfulness_threshold"] == 0.5
    tracking = record["tracking"]
    assert (tracking["seed"], tracking["generated_users"], tracking["refresh_every"]) == (1, 2, 15)
    scores = record["models"]["ours-template-names"]
    # Every refresh wrote a version inside the planted history: one snapshot each.
    assert scores["snapshots"] == scores["refreshes"] > 0 and scores["failed_refreshes"] == 0
    assert scores["changes"] >= record["users"]  # each synthetic user changes at least once
    assert 0.0 <= scores["share_reached"] <= 1.0
    if scores["share_reached"] > 0:  # lags count events: whole numbers, medians of them
        assert scores["lag_mean"] >= 0 and scores["lag_median"] * 2 == int(
            scores["lag_median"] * 2)
    for key in ("facet_precision", "facet_recall", "next_period_error", "faithfulness",
                "forecast_tv", "persistence_tv"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert scores["recommended_items"] == 5 * record["users"]

    # The printed tables are report.md's, and both say what metrics.json says.
    tables = markdown_tables(printed)
    assert tables == markdown_tables((out / "report.md").read_text())
    titles = [t for t in ("### LLM cost per refresh", "### Explanation faithfulness",
                          "### Explanations by reason kind", "### Facet labels",
                          "### Drift tracking (synthetic users)") if t in printed]
    assert len(titles) == 5 and len(tables) == 7
    shown = 0
    for columns, rows in tables:
        for column, cell in zip(columns, rows["ours-template-names"], strict=True):
            if cell == "–":  # a reason kind no item had
                assert column not in scores, column
                continue
            assert float(cell) == pytest.approx(scores[column], abs=cell_tolerance(cell)), column
            shown += 1
    assert shown == len(scores)
    timeline = out / "facets-ours-template-names.png"
    assert timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"({timeline.name})" in (out / "report.md").read_text()
    assert f"{tracking['timeline_user']}" in (out / "report.md").read_text()


def test_eval_validation_split_scores_earlier_targets(tiny: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    out = tmp_path / "validation"
    assert _eval(tiny, out, "--models", "random", "--validation") == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["protocol"] == "leave-last-out-validation"
    assert record["train_interactions"] == 18  # 30 events, less 6 test and 6 validation
    assert "no test target is seen" in (out / "report.md").read_text()


def test_eval_reads_any_movielens_folder_given_by_path(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A MovieLens set in ml-1m's `.dat` layout, as the same command meets it elsewhere:
    `--path` alone tells its layout; a folder holding no ratings file is a usage error."""
    root = tmp_path / "ml-1m"
    root.mkdir()
    (root / "movies.dat").write_text("".join(
        f"{n}::Film {n} (199{n % 10})::{['Drama', 'Comedy|Romance'][n % 2]}\n"
        for n in range(1, 13)), encoding="latin-1")
    (root / "ratings.dat").write_text("".join(
        f"{user}::{(user + 2 * step) % 12 + 1}::4::{978300000 + 3600 * (step * 6 + user)}\n"
        for user in range(1, 7) for step in range(5)), encoding="latin-1")
    out = tmp_path / "results"
    args = _parser().parse_args(["eval", "--path", str(root), "--models", "most-popular",
                                 "--k", "3", "--out", str(out), "--no-progress"])
    assert run_eval(args) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert (record["dataset"], record["test_users_available"]) == ("ml-1m", 6)
    assert record["interactions"] == 30 and record["catalog_size"] == 12
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    args = _parser().parse_args(["eval", "--path", str(tmp_path / "empty"), "--out",
                                 str(tmp_path / "none"), "--no-progress"])
    assert run_eval(args) == 2
    assert "no MovieLens ratings file" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
