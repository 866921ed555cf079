"""Profile-tracking metrics: does the written profile follow the user's real interests?

Recommendation metrics cannot tell whether a profile noticed that a user moved on;
these can, on users whose interest changes are known (`evals.synthetic`). All
functions are pure: they read a timeline of profile snapshots, the planted truth
and a facet assigner, and never call the service or an LLM.

Inputs
------
- A **snapshot** is `(ts, events_seen, facets)`: the profile as it stood at `ts`
  (normally the time of the last event it read) after reading the user's first
  `events_seen` events. A **facet** is `(text, strength, polarity)` with `text` =
  label and description (`facet_text`), `strength` in [0, 1] (decayed to `ts`), and
  `polarity` "like" or "avoid". Plain tuples and the named tuples below both work.
- A **timeline** is one user's snapshots; they are read in `(ts, events_seen)` order.
- The **truth** is that user's `PlantedPhase` list. A snapshot belongs to the phase
  with `start_ts <= ts < end_ts`; snapshots outside every phase are not scored.
- A **FacetAssigner** maps facet texts to category names, or None for "none of them".

Definitions
-----------
- **Top facet**: the like-facet with the highest strength (ties: the earlier one in
  the snapshot); avoid-facets never count. Its category is the snapshot's *top category*.
- **Tracking lag** (`tracking_lag`), for every phase change (phases 2, 3, ...): take
  the first snapshot of the new phase whose top category is the new phase's main
  (heaviest) category; lag = `max(0, events_seen - phase.start_event)`, the number of
  the user's events after the change the profile needed. When no snapshot inside the
  phase gets there, the change is *censored* (lag None): catching up after the next
  change does not count. `summarize_lags` reports the share of changes reached and
  the mean and median lag over the reached ones only.
- **Facet precision / recall** (`facet_precision_recall`), per snapshot, over the
  like-facets with strength >= `strength_floor` (default 0.1): precision = share of
  them assigned to a category planted in the current phase (undefined when there
  are none); recall = share of the current phase's planted categories that at least
  one of them is assigned to. Each is the plain mean over snapshots where defined.
- **Interest distribution error** (`interest_distribution_error`): the predicted
  mix is the profile's like-facet strengths summed per assigned category and
  normalised (`predicted_mix`); the actual mix is the share of the user's events in
  the next period per item category (`actual_mix`). The error is the total-variation
  distance TV = ½ Σ_c |p_c − a_c| in [0, 1] (L1 = 2·TV): 0 for identical mixes, 1 for
  disjoint ones. A profile with no assigned like-facet predicts nothing: error 1.
- **Mix MSE** (`mix_mse`): the mean over a fixed list of categories (the dataset's,
  plus any either mix names) of (p_c − a_c)², both mixes normalised first; an empty
  prediction is the zero vector. Next-period forecasts are scored with it and TV
  (`evals.forecast`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from evals.synthetic import PlantedPhase
from evals.types import Interaction

# Calibrated with all-MiniLM-L6-v2 against the synthetic category descriptions. Tuning set:
# 40 hand-written on-topic facets score 0.445-0.78 with their own category (always the
# nearest); of 20 off-topic ones only neighbouring hobbies pass 0.40 (board games -> chess
# 0.46, online shooters -> chess 0.42), the next is 0.39. Held out: 19 of 20 new facets
# pass (a terse "Bebop fan" scores 0.37), no unrelated one exceeds 0.31.
DEFAULT_ASSIGN_THRESHOLD = 0.40
DEFAULT_STRENGTH_FLOOR = 0.1


class FacetView(NamedTuple):
    text: str
    strength: float
    polarity: str  # "like" | "avoid"


class ProfileSnapshot(NamedTuple):
    ts: int
    events_seen: int
    facets: Sequence[tuple[str, float, str]]


Facet = tuple[str, float, str]
Snapshot = tuple[int, int, Sequence[Facet]]


def facet_text(label: str, description: str) -> str:
    """The one text a facet is judged by, so runner and calibration embed the same thing."""
    label, description = label.strip(), description.strip()
    if not description:
        return label
    return f"{label}: {description}" if label else description


class FacetAssigner(Protocol):
    def assign(self, texts: Sequence[str]) -> list[str | None]:
        """The category of each facet text, or None when it matches none."""
        ...


class TextEmbedder(Protocol):
    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def unit_vector(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else [0.0 for _ in vector]


class EmbeddingAssigner:
    """Nearest category description by cosine, if close enough.

    Facet wording is free text from an LLM, so exact keywords would miss most
    matches; the embedder judges meaning. Results are cached per text because the
    same facet reappears in many snapshots.
    """

    def __init__(self, categories: Mapping[str, str], embedder: TextEmbedder,
                 threshold: float = DEFAULT_ASSIGN_THRESHOLD) -> None:
        if not categories:
            raise ValueError("at least one category is needed")
        self.threshold = threshold
        self._embedder = embedder
        self._names = list(categories)
        self._vectors = [unit_vector(v)
                         for v in embedder.embed([categories[n] for n in self._names])]
        self._cache: dict[str, dict[str, float]] = {}

    def similarities(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Cosine of each text to every category, for calibration and inspection."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        vectors = self._embedder.embed(missing) if missing else []
        for text, vector in zip(missing, vectors, strict=True):
            v = unit_vector(vector)
            self._cache[text] = {name: sum(a * b for a, b in zip(v, c, strict=True))
                                 for name, c in zip(self._names, self._vectors, strict=True)}
        return [self._cache[t] for t in texts]

    def assign(self, texts: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for sims in self.similarities(texts):
            best = max(self._names, key=lambda n: sims[n])  # ties: first category
            out.append(best if sims[best] >= self.threshold else None)
        return out


class KeywordAssigner:
    """Case-insensitive keyword hits; for logic tests that must not load a model.

    The category with the most hits wins; no hit or a tie gives None.
    """

    def __init__(self, keywords: Mapping[str, Sequence[str]]) -> None:
        self._keywords = {c: [k.lower() for k in ks] for c, ks in keywords.items()}

    def assign(self, texts: Sequence[str]) -> list[str | None]:
        out: list[str | None] = []
        for text in texts:
            low = text.lower()
            hits = {c: sum(k in low for k in ks) for c, ks in self._keywords.items()}
            best = max(hits.values(), default=0)
            winners = [c for c, n in hits.items() if n == best]
            out.append(winners[0] if best > 0 and len(winners) == 1 else None)
        return out


def _ordered(timeline: Iterable[Snapshot]) -> list[Snapshot]:
    return sorted(timeline, key=lambda s: (s[0], s[1]))


def _assignments(timeline: Sequence[Snapshot], assigner: FacetAssigner) -> dict[str, str | None]:
    """Every distinct facet text assigned once, in one batch."""
    texts = list(dict.fromkeys(text for _, _, facets in timeline for text, _, _ in facets))
    return dict(zip(texts, assigner.assign(texts), strict=True))


def _phase_at(truth: Sequence[PlantedPhase], ts: int) -> PlantedPhase | None:
    return next((p for p in truth if p.contains(ts)), None)


def top_like(facets: Sequence[Facet]) -> str | None:
    """Text of the strongest like-facet (ties: the earlier one); None without likes."""
    best: tuple[float, str] | None = None
    for text, strength, polarity in facets:
        if polarity == "like" and (best is None or strength > best[0]):
            best = (strength, text)
    return best[1] if best else None


@dataclass(frozen=True)
class ChangeLag:
    change_ts: int
    category: str  # the new phase's main category
    lag: int | None  # events after the change until it was the top facet; None = censored


@dataclass(frozen=True)
class LagSummary:
    changes: int
    reached: int
    share_reached: float | None
    mean_lag: float | None
    median_lag: float | None


def tracking_lag(timeline: Sequence[Snapshot], truth: Sequence[PlantedPhase],
                 assigner: FacetAssigner) -> list[ChangeLag]:
    """One entry per planted change of this user (see the module docstring)."""
    snapshots = _ordered(timeline)
    category_of = _assignments(snapshots, assigner)
    phases = sorted(truth, key=lambda p: p.start_ts)
    out: list[ChangeLag] = []
    for phase in phases[1:]:
        lag: int | None = None
        for ts, events_seen, facets in snapshots:
            if not phase.contains(ts):
                continue
            top = top_like(facets)
            if top is not None and category_of[top] == phase.main:
                lag = max(0, events_seen - phase.start_event)
                break
        out.append(ChangeLag(change_ts=phase.start_ts, category=phase.main, lag=lag))
    return out


def summarize_lags(lags: Iterable[ChangeLag]) -> LagSummary:
    """Pool changes over users; censored changes lower the share, not the mean."""
    lags = list(lags)
    reached = [c.lag for c in lags if c.lag is not None]
    return LagSummary(
        changes=len(lags), reached=len(reached),
        share_reached=len(reached) / len(lags) if lags else None,
        mean_lag=statistics.fmean(reached) if reached else None,
        median_lag=float(statistics.median(reached)) if reached else None,
    )


@dataclass(frozen=True)
class SnapshotScore:
    ts: int
    precision: float | None  # None: no like-facet above the floor
    recall: float


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float | None
    recall: float | None
    snapshots: int
    snapshots_with_likes: int


def snapshot_scores(timeline: Sequence[Snapshot], truth: Sequence[PlantedPhase],
                    assigner: FacetAssigner,
                    strength_floor: float = DEFAULT_STRENGTH_FLOOR) -> list[SnapshotScore]:
    """Per-snapshot precision and recall, to pool over users before averaging."""
    snapshots = _ordered(timeline)
    category_of = _assignments(snapshots, assigner)
    out: list[SnapshotScore] = []
    for ts, _, facets in snapshots:
        phase = _phase_at(truth, ts)
        if phase is None:
            continue
        planted = {c for c, w in phase.categories.items() if w > 0}
        assigned = [category_of[text] for text, strength, polarity in facets
                    if polarity == "like" and strength >= strength_floor]
        precision = sum(c in planted for c in assigned) / len(assigned) if assigned else None
        recall = len(planted & set(assigned)) / len(planted) if planted else 1.0
        out.append(SnapshotScore(ts=ts, precision=precision, recall=recall))
    return out


def mean_precision_recall(scores: Iterable[SnapshotScore]) -> PrecisionRecall:
    scores = list(scores)
    precisions = [s.precision for s in scores if s.precision is not None]
    return PrecisionRecall(
        precision=statistics.fmean(precisions) if precisions else None,
        recall=statistics.fmean(s.recall for s in scores) if scores else None,
        snapshots=len(scores), snapshots_with_likes=len(precisions),
    )


def facet_precision_recall(timeline: Sequence[Snapshot], truth: Sequence[PlantedPhase],
                           assigner: FacetAssigner,
                           strength_floor: float = DEFAULT_STRENGTH_FLOOR) -> PrecisionRecall:
    """Mean per-snapshot facet precision and recall for one user."""
    return mean_precision_recall(snapshot_scores(timeline, truth, assigner, strength_floor))


def _normalised(mix: Mapping[str, float]) -> dict[str, float]:
    if any(w < 0 or math.isnan(w) for w in mix.values()):
        raise ValueError("mix weights must be non-negative numbers")
    total = sum(mix.values())
    return {c: w / total for c, w in mix.items() if w > 0} if total > 0 else {}


def predicted_mix(facets: Sequence[Facet], assigner: FacetAssigner,
                  strength_floor: float = 0.0) -> dict[str, float]:
    """Category shares the profile implies: like-facet strengths summed per category."""
    likes = [(text, strength) for text, strength, polarity in facets
             if polarity == "like" and strength >= strength_floor]
    mix: dict[str, float] = {}
    for (_, strength), category in zip(likes, assigner.assign([t for t, _ in likes]),
                                       strict=True):
        if category is not None:
            mix[category] = mix.get(category, 0.0) + strength
    return _normalised(mix)


def actual_mix(events: Iterable[Interaction], item_category: Mapping[str, str], start_ts: int,
               end_ts: int, min_rating: float | None = None) -> dict[str, float]:
    """Share of the events with `start_ts <= ts < end_ts` per item category.

    Events on items without a category are left out; `min_rating` keeps only
    events rated at least that (unrated events are kept) when the period should
    mean "what they liked" rather than "what they touched".
    """
    counts: dict[str, float] = {}
    for e in events:
        if not start_ts <= e.ts < end_ts or e.item not in item_category:
            continue
        if min_rating is not None and e.rating is not None and e.rating < min_rating:
            continue
        category = item_category[e.item]
        counts[category] = counts.get(category, 0.0) + 1.0
    return _normalised(counts)


def interest_distribution_error(predicted: Mapping[str, float],
                                actual: Mapping[str, float]) -> float:
    """Total-variation distance between the two mixes (both normalised first)."""
    a = _normalised(actual)
    if not a:
        raise ValueError("the actual mix is empty: no events to compare against")
    p = _normalised(predicted)
    if not p:
        return 1.0
    return 0.5 * sum(abs(p.get(c, 0.0) - a.get(c, 0.0)) for c in set(p) | set(a))


def mix_mse(predicted: Mapping[str, float], actual: Mapping[str, float],
            categories: Iterable[str] = ()) -> float:
    """Mean squared error of the shares over `categories` and every category either
    mix names (both normalised first; an empty prediction is all zeros)."""
    a = _normalised(actual)
    if not a:
        raise ValueError("the actual mix is empty: no events to compare against")
    p = _normalised(predicted)
    names = set(categories) | set(p) | set(a)
    return sum((p.get(c, 0.0) - a.get(c, 0.0)) ** 2 for c in names) / len(names)


def next_period_error(snapshot: Snapshot, events: Iterable[Interaction],
                      item_category: Mapping[str, str], assigner: FacetAssigner,
                      period_s: int) -> float | None:
    """Error of one snapshot against the events in the `period_s` seconds after it.

    None when the user did nothing in that period (nothing to predict).
    """
    ts, _, facets = snapshot
    actual = actual_mix(events, item_category, ts + 1, ts + 1 + period_s)
    if not actual:
        return None
    return interest_distribution_error(predicted_mix(facets, assigner), actual)
