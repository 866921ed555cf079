"""Paired differences between models over the same users, and the report's section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evals.report import RunInfo, write_report
from evals.significance import paired_differences, reference_model


def _scores(ndcg: list[float] | np.ndarray) -> dict[str, list[float]]:
    values = [float(v) for v in ndcg]
    return {"ndcg": values, "hr": [float(v > 0) for v in values]}


def test_a_lead_on_every_user_is_its_own_interval() -> None:
    base = np.linspace(0.0, 0.5, 50)
    paired = paired_differences({"ours": _scores(base + 0.1), "markov": _scores(base)}, "ours")
    row = paired["markov"]
    assert row["ndcg_diff"] == pytest.approx(0.1)
    assert row["ndcg_low"] == pytest.approx(0.1) and row["ndcg_high"] == pytest.approx(0.1)
    assert row["better"] == 50 and row["worse"] == 0


def test_a_planted_advantage_is_told_apart_and_noise_is_not() -> None:
    rng = np.random.default_rng(7)
    users = 400
    strong = (rng.random(users) < 0.30).astype(float)
    weak = (rng.random(users) < 0.15).astype(float)
    twin = (rng.random(users) < 0.30).astype(float)  # as good as `strong`, other users
    paired = paired_differences(
        {"ours": _scores(strong), "weak": _scores(weak), "twin": _scores(twin)}, "ours", seed=3)
    assert paired["weak"]["ndcg_low"] > 0  # a real lead: the interval is above 0
    assert paired["weak"]["hr_low"] > 0
    assert paired["twin"]["ndcg_low"] < 0 < paired["twin"]["ndcg_high"]  # cannot tell
    assert paired["weak"]["ndcg_low"] < paired["weak"]["ndcg_diff"] < paired["weak"]["ndcg_high"]
    # The same seed gives the same interval.
    again = paired_differences({"ours": _scores(strong), "weak": _scores(weak)}, "ours", seed=3)
    assert again["weak"] == paired["weak"]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="reference"):
        paired_differences({"markov": _scores([0.1])}, "ours")
    with pytest.raises(ValueError, match="different users"):
        paired_differences({"ours": _scores([0.1, 0.2]), "markov": _scores([0.1])}, "ours")


def test_the_reference_is_ours_else_a_variant_else_none() -> None:
    assert reference_model(["markov", "ours-no-llm", "ours"]) == "ours"
    assert reference_model(["markov", "ours-no-llm"]) == "ours-no-llm"
    assert reference_model(["markov", "ease"]) is None


def test_the_report_has_the_paired_section(tmp_path: Path) -> None:
    run = RunInfo(dataset="d", protocol="leave-last-out", k=10, users=3, seed=0,
                  positive_threshold=3.5, catalog_size=5, interactions=9,
                  train_interactions=6, test_users_available=3)
    results = {"ours": {"ndcg@10": 0.5, "hr@10": 1.0}, "markov": {"ndcg@10": 0.2, "hr@10": 0.5}}
    paired = paired_differences({"ours": _scores([0.5, 0.5, 0.5]),
                                 "markov": _scores([0.2, 0.4, 0.0])}, "ours")
    paths = write_report(tmp_path, run, results, paired=paired, reference="ours")
    text = paths["markdown"].read_text()
    assert "### ours against each model, user by user" in text
    assert "| markov | 0.3000 |" in text
    record = json.loads(paths["json"].read_text())
    assert record["paired"]["reference"] == "ours"
    assert record["paired"]["models"]["markov"]["better"] == 3
    # Without a comparison, no section.
    plain = write_report(tmp_path / "plain", run, results)
    assert "user by user" not in plain["markdown"].read_text()
