"""The ranker's features for (user, candidate) pairs: one list, shared by training and serving.

Training builds these rows from time-split samples of a tenant's history (pseudo-facets
stand in for the profile); serving builds them from the live candidates and the stored
profile. Both call `build_features`, so a model never sees a feature computed two ways.
Pure numpy, no I/O.

The columns, in order (`FEATURE_NAMES`); bump `FEATURE_VERSION` whenever they change,
since a saved ranker refuses rows of another version:

- `score_<source>`, `rank_<source>` for each source of `ALL_SOURCES` (facet,
  cooccurrence, transition, sequence, content, popular): the source's own score and
  0-based rank; a source that did not propose the item gives score 0 and rank
  `MISSING_RANK`.
- `n_sources`: how many sources proposed the item.
- `facet_best`, `facet_sum`: the best and the sum over like-facets of
  strength x cosine(item vector, facet centroid) (negative cosines count as 0).
- `facet_best_long`: 1 when that best like-facet is long-term, else 0.
- `avoid_penalty`: the largest avoid-facet strength x cosine (0 without avoid-facets).
- `facet_cf_best`, `facet_cf_sum`: the best and the sum over like-facets of strength x
  the mean co-occurrence score between the item and the facet's evidence items
  (`facet_cooccurrence`): which of the user's items still count, as the profile's decay
  rules keep them, rather than the co-occurrence source's newest liked items;
  `facet_cf_max`: the best such mean, unweighted.
- `pop_recent`, `pop_all`: the item's recent and all-time popularity in [0, 1].
- `via_age_days`: days between now and the newest user event a source named as the
  reason for the item (`SourceHit.via`), capped at `MAX_AGE_DAYS`; the cap when none did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from service.training.contract import (
    ALL_SOURCES,
    CandidateSource,
    FacetSignal,
    SourceHit,
    UserEvent,
)

FEATURE_VERSION = "f4"  # f3 was a trial, never released
MISSING_RANK = 1000.0
MAX_AGE_DAYS = 365.0
DAY_SECONDS = 86400.0

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{kind}_{source}" for source in ALL_SOURCES for kind in ("score", "rank")),
    "n_sources", "facet_best", "facet_sum", "facet_best_long", "avoid_penalty",
    "pop_recent", "pop_all", "via_age_days", "facet_cf_best", "facet_cf_sum", "facet_cf_max",
)
FACET_CF_COLUMNS = ("facet_cf_best", "facet_cf_sum", "facet_cf_max")
COLUMN = {name: n for n, name in enumerate(FEATURE_NAMES)}
# What the profile's facets add to a row (beside `rank_facet`, and the facet source's
# share of `n_sources`): the columns a ranker without the profile does not see.
PROFILE_COLUMNS = ("score_facet", "facet_best", "facet_sum", "facet_best_long",
                   "avoid_penalty", *FACET_CF_COLUMNS)

Features = npt.NDArray[np.float32]
# (groups of row items, column items) -> groups x columns: each group's mean co-occurrence
# score over its distinct items (`cooccurrence_means`)
CooccurrenceMeans = Callable[[Sequence[Sequence[str]], Sequence[str]], npt.NDArray[np.float64]]


# (best, sum, index of the best like-facet or -1, avoid penalty) per item row.
FacetScores = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64],
                    npt.NDArray[np.int64], npt.NDArray[np.float64]]


def facet_scores(facets: Sequence[FacetSignal], item_vectors: npt.NDArray[np.float32]
                 ) -> FacetScores:
    """(best, sum, index of the best like-facet or -1, avoid penalty) per item row.

    `item_vectors` rows are unit length (zero rows for items without a vector).
    """
    n = len(item_vectors)
    likes = [f for f in facets if not f.avoid]
    avoids = [f for f in facets if f.avoid]
    best = np.zeros(n, dtype=np.float64)
    total = np.zeros(n, dtype=np.float64)
    best_of = np.full(n, -1, dtype=np.int64)
    penalty = np.zeros(n, dtype=np.float64)
    if likes and n:
        centroids = np.stack([f.centroid for f in likes]).astype(np.float32)
        strengths = np.array([f.strength for f in likes], dtype=np.float64)[:, None]
        contribution = strengths * np.clip(centroids @ item_vectors.T, 0.0, None)
        best_of = contribution.argmax(axis=0).astype(np.int64)
        best = contribution.max(axis=0)
        total = contribution.sum(axis=0)
        best_of[best <= 0] = -1
    if avoids and n:
        centroids = np.stack([f.centroid for f in avoids]).astype(np.float32)
        strengths = np.array([f.strength for f in avoids], dtype=np.float64)[:, None]
        penalty = (strengths * np.clip(centroids @ item_vectors.T, 0.0, None)).max(axis=0)
    return best, total, best_of, penalty


def without_profile_columns(features: Features) -> Features:
    """A copy of the rows with the profile's columns (`PROFILE_COLUMNS`, `rank_facet`)
    as for an item no facet proposed or resembles: a ranker trained on such rows never
    splits on them, so what a request puts there does not change its scores."""
    out = features.copy()
    out[:, [COLUMN[name] for name in PROFILE_COLUMNS]] = 0.0
    out[:, COLUMN["rank_facet"]] = MISSING_RANK
    return out


def facet_cooccurrence(facets: Sequence[FacetSignal], candidates: Sequence[str],
                       means_of: CooccurrenceMeans) -> npt.NDArray[np.float64]:
    """The `FACET_CF_COLUMNS` per candidate (candidates x 3): over the like-facets with
    evidence items, the best and the sum of strength x the mean co-occurrence score from
    the facet's distinct items to the candidate (`means_of(groups, columns)`), and the
    best mean."""
    out = np.zeros((len(candidates), len(FACET_CF_COLUMNS)), dtype=np.float64)
    likes = [f for f in facets if not f.avoid and f.items]
    if not likes or not len(candidates):
        return out
    means = means_of([f.items for f in likes], candidates)
    for f, mean in zip(likes, means, strict=True):
        out[:, 0] = np.maximum(out[:, 0], f.strength * mean)
        out[:, 1] += f.strength * mean
        out[:, 2] = np.maximum(out[:, 2], mean)
    return out


def profile_signals(
        likes: Sequence[tuple[float, bool, npt.NDArray[np.float32], tuple[str, ...]]],
        avoid_centroid: npt.NDArray[np.float32] | None,
        history: Sequence[UserEvent]) -> list[FacetSignal]:
    """A stored profile's facets as the ranker saw facets in training (`pseudo_facets.py`):
    like-facets (decayed strength, long-term, centroid, evidence items) with their
    strengths as shares of the like total, and one avoid signal whose strength is the
    share of the user's events that are negative (two at least), centred on the
    avoid-facets' evidence."""
    total = sum(max(strength, 0.0) for strength, _, _, _ in likes)
    signals = [FacetSignal(strength=max(strength, 0.0) / total if total > 0 else 0.0,
                           long_term=long_term, avoid=False, centroid=centroid, items=items)
               for strength, long_term, centroid, items in likes]
    return [*signals, *avoid_signal(sum(1 for e in history if e.weight <= 0.0),
                                    len(history), avoid_centroid)]


def avoid_signal(negatives: int, events: int,
                 centroid: npt.NDArray[np.float32] | None) -> list[FacetSignal]:
    """The one avoid signal, in training and serving alike: centred on `centroid`, its
    strength the share of the `events` that are negative, and only with two negatives
    at least (one low rating is not yet a dislike)."""
    if centroid is None or negatives < 2:
        return []
    return [FacetSignal(strength=min(1.0, negatives / max(events, 1)), long_term=False,
                        avoid=True, centroid=centroid)]


def unit_mean(vectors: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32] | None:
    """The unit-length mean of some items' vectors (a facet's centroid), None for none."""
    if not len(vectors):
        return None
    mean = np.mean(np.stack(vectors), axis=0)
    norm = float(np.linalg.norm(mean))
    unit: npt.NDArray[np.float32] = (mean / norm if norm > 0 else mean).astype(np.float32)
    return unit


def build_features(
    candidates: Sequence[str],
    hits: Mapping[CandidateSource, Mapping[str, SourceHit]],
    history: Sequence[UserEvent],
    item_vectors: npt.NDArray[np.float32] | None,
    facets: Sequence[FacetSignal],
    popularity: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    now: float,
    scored: FacetScores | None = None,
    cooccurrence: CooccurrenceMeans | None = None,
) -> Features:
    """One row of `FEATURE_NAMES` per candidate, in the order given.

    `hits` holds each source's proposals (a source may be missing); `item_vectors` is
    candidates x dim (unit rows), or None when no vectors are known (facet features 0).
    `scored` is `facet_scores(facets, item_vectors)` when the caller has it already;
    `cooccurrence` gives the `facet_cf_*` columns (0 without it; `facet_cooccurrence`).
    """
    n = len(candidates)
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return out
    index = {item_id: j for j, item_id in enumerate(candidates)}
    newest_via = np.full(n, -np.inf, dtype=np.float64)
    for source in ALL_SOURCES:
        score_col, rank_col = COLUMN[f"score_{source}"], COLUMN[f"rank_{source}"]
        out[:, rank_col] = MISSING_RANK
        # Gathered in Python, written by numpy once per column: one element write per hit
        # and column cost more than the rest of the rows (a source names each item once).
        rows: list[int] = []
        scores: list[float] = []
        ranks: list[float] = []
        via_rows: list[int] = []
        via_ts: list[float] = []
        for item_id, hit in hits.get(source, {}).items():
            j = index.get(item_id)
            if j is None:
                continue
            rows.append(j)
            scores.append(hit.score)
            ranks.append(hit.rank)
            if hit.via is not None and 0 <= hit.via < len(history):
                via_rows.append(j)
                via_ts.append(history[hit.via].ts)
        if rows:
            at = np.array(rows, dtype=np.int64)
            out[at, score_col] = scores
            out[at, rank_col] = np.minimum(np.array(ranks, dtype=np.float64), MISSING_RANK)
            out[at, COLUMN["n_sources"]] += 1.0
        if via_rows:
            np.maximum.at(newest_via, np.array(via_rows, dtype=np.int64), via_ts)
    if item_vectors is not None and facets:
        best, total, best_of, penalty = (scored if scored is not None
                                         else facet_scores(facets, item_vectors))
        likes = [f for f in facets if not f.avoid]
        long_term = np.array([f.long_term for f in likes] + [False], dtype=np.float32)
        out[:, COLUMN["facet_best"]] = best
        out[:, COLUMN["facet_sum"]] = total
        out[:, COLUMN["facet_best_long"]] = long_term[best_of]  # -1 picks the False pad
        out[:, COLUMN["avoid_penalty"]] = penalty
    if cooccurrence is not None and facets:
        first = COLUMN[FACET_CF_COLUMNS[0]]
        out[:, first:first + len(FACET_CF_COLUMNS)] = facet_cooccurrence(
            facets, candidates, cooccurrence)
    recent, all_time = popularity
    out[:, COLUMN["pop_recent"]] = recent
    out[:, COLUMN["pop_all"]] = all_time
    age = np.where(np.isfinite(newest_via), (now - newest_via) / DAY_SECONDS, MAX_AGE_DAYS)
    out[:, COLUMN["via_age_days"]] = np.clip(age, 0.0, MAX_AGE_DAYS)
    return out
