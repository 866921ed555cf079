"""Is one model's lead real? Paired differences over the same test users, with a bootstrap
confidence interval.

Every model of a run is scored on the same test users, so two models are compared user
by user: the difference of their per-user NDCG@K (and HR@K), its mean, and a 95%
percentile-bootstrap interval of that mean (`scipy.stats.bootstrap`, resampling users,
`RESAMPLES` draws, the run's seed). An interval that contains 0 says the run cannot tell
the two apart: on a few hundred users, where one hit is 1/400 of HR, this is common, and
a table of means alone would hide it. `better` / `worse` count the users for whom the
reference model's metric is higher / lower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import bootstrap

RESAMPLES = 2000
CONFIDENCE = 0.95
PAIRED_COLUMNS = ("ndcg_diff", "ndcg_low", "ndcg_high", "hr_diff", "hr_low", "hr_high",
                  "better", "worse")


def _interval(diff: np.ndarray, seed: int) -> tuple[float, float]:
    if len(diff) < 2 or np.all(diff == diff[0]):
        value = float(diff[0]) if len(diff) else 0.0
        return value, value  # no spread to resample: the interval is the point
    result = bootstrap((diff,), np.mean, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                       method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_differences(per_user: Mapping[str, Mapping[str, Sequence[float]]], reference: str,
                       seed: int = 0) -> dict[str, dict[str, float]]:
    """For every other model: the reference's per-user NDCG and HR minus that model's,
    mean and bootstrap interval (see the module notes), and users better / worse.

    `per_user[model]` holds `"ndcg"` and `"hr"`, one value per test user, in the same
    user order for every model."""
    if reference not in per_user:
        raise ValueError(f"no per-user scores for the reference model {reference!r}")
    ref = per_user[reference]
    out: dict[str, dict[str, float]] = {}
    for name, scores in per_user.items():
        if name == reference:
            continue
        row: dict[str, float] = {}
        for metric in ("ndcg", "hr"):
            a = np.asarray(ref[metric], dtype=np.float64)
            b = np.asarray(scores[metric], dtype=np.float64)
            if a.shape != b.shape:
                raise ValueError(f"{reference} and {name} were scored on different users "
                                 f"({len(a)} and {len(b)})")
            diff = a - b
            low, high = _interval(diff, seed)
            row[f"{metric}_diff"] = float(diff.mean()) if len(diff) else 0.0
            row[f"{metric}_low"], row[f"{metric}_high"] = low, high
            if metric == "ndcg":
                row["better"] = float(np.sum(diff > 0))
                row["worse"] = float(np.sum(diff < 0))
        out[name] = row
    return out


def reference_model(names: Sequence[str]) -> str | None:
    """The model the others are compared with: `ours` when it ran, else the first of our
    variants, else none (a run of baselines only has no reference)."""
    if "ours" in names:
        return "ours"
    return next((n for n in names if n.startswith("ours")), None)
