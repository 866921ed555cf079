"""The facet ablation's logic on made-up samples (the real run builds them from MovieLens:
`python -m evals.ranker_ablation`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evals import ranker_ablation
from evals.ranker_ablation import compare, cross_validate, without_profile
from service.training.features import COLUMN, FEATURE_NAMES, MISSING_RANK
from service.training.ranker import Sample


def _sample(user: str, rng: np.random.Generator, facet_signal: bool) -> Sample:
    """40 candidates: co-occurrence proposes all of them, the facet source half; the
    held-out item is the one with the best facet score when `facet_signal`."""
    n = 40
    features = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    for source in ("facet", "cooccurrence", "transition", "sequence", "content", "popular"):
        features[:, COLUMN[f"rank_{source}"]] = MISSING_RANK
    features[:, COLUMN["score_cooccurrence"]] = rng.random(n)
    features[:, COLUMN["rank_cooccurrence"]] = np.argsort(np.argsort(
        -features[:, COLUMN["score_cooccurrence"]]))
    features[:, COLUMN["n_sources"]] = 1.0
    facet_rows = np.arange(0, n, 2)
    features[facet_rows, COLUMN["rank_facet"]] = np.arange(len(facet_rows))
    features[facet_rows, COLUMN["n_sources"]] += 1.0
    features[:, COLUMN["facet_best"]] = rng.random(n)
    labels = np.zeros(n, dtype=np.int32)
    labels[int(np.argmax(features[:, COLUMN["facet_best"]])) if facet_signal
           else int(rng.integers(n))] = 1
    return Sample(user, features, labels)


def test_without_profile_drops_facet_only_candidates_and_zeroes_facet_columns() -> None:
    s = _sample("u", np.random.default_rng(0), True)
    # One candidate only the facet source proposed.
    s.features[2, COLUMN["rank_cooccurrence"]] = MISSING_RANK
    s.features[2, COLUMN["n_sources"]] = 1.0
    s.features[:, COLUMN["facet_cf_max"]] = 0.5
    out = without_profile(s)
    assert len(out.labels) == len(s.labels) - 1
    assert (out.features[:, COLUMN["facet_best"]] == 0).all()
    assert (out.features[:, COLUMN["facet_cf_max"]] == 0).all()
    assert (out.features[:, COLUMN["rank_facet"]] == MISSING_RANK).all()
    assert (out.features[:, COLUMN["n_sources"]] == 1).all()
    assert s.features[0, COLUMN["facet_best"]] != 0  # the input is left alone


def test_a_facet_column_that_names_the_item_shows_as_a_gain() -> None:
    rng = np.random.default_rng(1)
    samples = [_sample(f"u{n}", rng, True) for n in range(60)]
    result = compare(samples, folds=3, seeds=[0])
    assert result["ndcg_diff"] > 0.3, result
    assert result["with_profile"]["hr@10"] > result["without_profile"]["hr@10"]


def test_noise_facets_show_no_gain() -> None:
    rng = np.random.default_rng(2)
    samples = [_sample(f"u{n}", rng, False) for n in range(60)]
    result = compare(samples, folds=3, seeds=[0])
    assert abs(result["ndcg_diff"]) < 3 * result["ndcg_diff_se"] + 0.05, result


def test_every_query_is_scored_once_per_seed() -> None:
    rng = np.random.default_rng(3)
    samples = [_sample(f"u{n}", rng, True) for n in range(12)]
    assert cross_validate(samples, 3, [0, 1]).shape == (24, 2)
    with pytest.raises(ValueError, match="folds"):
        cross_validate(samples[:2], 3, [0])


def test_samples_kept_in_a_file_are_read_back_instead_of_built_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(4)
    samples = [_sample(f"u{n}", rng, True) for n in range(12)]
    built: list[int] = []

    def build(*args: object) -> list[Sample]:
        built.append(1)
        assert args[-1] == 1  # one sample-building process unless --workers says more
        return samples

    monkeypatch.setattr(ranker_ablation, "build", build)
    kept = tmp_path / "samples.pkl"
    args = ["--folds", "3", "--seeds", "1", "--samples", str(kept)]
    outputs = []
    for _ in range(2):
        assert ranker_ablation.main(args) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert built == [1] and kept.exists()
    assert outputs[0] == outputs[1] and outputs[0]["queries"] == 12


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--workers", "0"], ["--folds", "1"], ["--holdouts", "0"]):
        with pytest.raises(SystemExit) as exit_:
            ranker_ablation.main(bad)
        assert exit_.value.code == 2 and "at least" in capsys.readouterr().err
