"""Pseudo-facets: what stands in for a profile's facets when the ranker is trained.

The profile's facets are not known at training time. Given the catalog (`GroupingInputs`),
pseudo-facets are what a profile refresh would make of the user's history (the same
grouping code, `summaries/grouping.py`); without it, k-means groups of the user's positive
items. Low-rated items form one avoid signal either way. `facet_hits` is the "facet"
source they retrieve, as Chroma does at serving time. See `ranker.py`'s module notes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from service.catalog.models import Item
from service.ingest.models import Event
from service.profiles.drafting import evidence_support
from service.profiles.merge import DecayRules, NewFacet, merge_profile
from service.summaries.grouping import ItemFacts, TagWeights, group_events
from service.training.contract import MAX_HISTORY, FacetSignal, SourceHit, UserEvent
from service.training.data import POSITIVE
from service.training.features import avoid_signal, unit_mean

MAX_PSEUDO_FACETS = 4
PSEUDO_FACET_ITEMS = 50  # the newest positive items grouped into pseudo-facets
PSEUDO_HALF_LIFE_DAYS = 30.0
LONG_TERM_SPAN_DAYS = 14.0

Vector = npt.NDArray[np.float32]


def _unit(v: npt.NDArray[np.float64] | npt.NDArray[np.float32]) -> Vector:
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype(np.float32)


def pseudo_facets(history: Sequence[UserEvent], vectors: Mapping[str, Vector], now: float,
                  seed: int) -> list[FacetSignal]:
    """Like-groups of the user's positive items (k-means on their vectors) and one avoid
    group of their negative items, shaped as the profile's facets are at serving time."""
    from sklearn.cluster import KMeans

    positives = [e for e in history if e.weight >= POSITIVE and e.item_id in vectors]
    positives = positives[-PSEUDO_FACET_ITEMS:]
    facets: list[FacetSignal] = []
    if positives:
        matrix = np.stack([vectors[e.item_id] for e in positives]).astype(np.float32)
        groups = min(MAX_PSEUDO_FACETS, len(positives))
        if groups > 1:
            labels = KMeans(n_clusters=groups, random_state=seed, n_init=1,
                            max_iter=50).fit_predict(matrix)
        else:
            labels = np.zeros(len(positives), dtype=np.int64)
        decay = np.array([0.5 ** ((now - e.ts) / 86400.0 / PSEUDO_HALF_LIFE_DAYS)
                          for e in positives], dtype=np.float64)
        total = float(decay.sum()) or 1.0
        for g in sorted(set(labels.tolist())):
            members = labels == g
            stamps = [e.ts for e, m in zip(positives, members, strict=True) if m]
            facets.append(FacetSignal(
                strength=float(decay[members].sum()) / total,
                long_term=(max(stamps) - min(stamps)) / 86400.0 >= LONG_TERM_SPAN_DAYS
                and len(stamps) >= 3,
                avoid=False, centroid=_unit(matrix[members].mean(axis=0)),
                items=tuple(e.item_id for e, m in zip(positives, members, strict=True) if m)))
    return facets + _avoid_signal(history, vectors)


GROUPED_EVENTS = 1000  # the newest events a refresh groups (Settings.summary_max_events)


@dataclass(frozen=True)
class GroupingInputs:
    """What grouping needs of the catalog: each item's `ItemFacts` (tags, category,
    title), the tenant's tag weights and merge rules. Plain values, so the ranker's
    sample builders in other processes get a copy cheaply (`ranker.build_samples`)."""

    facts: Mapping[str, ItemFacts]
    weights: TagWeights | None
    rating_max: float = 5.0
    rules: DecayRules = DecayRules()  # the tenant's merge rules (what a refresh keeps)

    @classmethod
    def of(cls, items: Mapping[str, Item], weights: TagWeights | None,
           rating_max: float = 5.0, rules: DecayRules | None = None) -> GroupingInputs:
        """From catalog rows: each item's facts made once for every history grouped."""
        return cls({item_id: ItemFacts.of(item) for item_id, item in items.items()},
                   weights, rating_max, rules or DecayRules())


def _avoid_signal(history: Sequence[UserEvent], vectors: Mapping[str, Vector]
                  ) -> list[FacetSignal]:
    negatives = [e for e in history if e.weight <= 0.0 and e.item_id in vectors]
    return avoid_signal(len(negatives), len(history), unit_mean(
        [vectors[e.item_id] for e in negatives[-PSEUDO_FACET_ITEMS:]]))


def _event_kind(weight: float, rating_max: float) -> dict[str, object]:
    """The stored event a log weight stands for (`data.event_weight` inverted), so that
    grouping and a facet's evidence support see what a refresh sees: a view (weight
    `POSITIVE`) backs a like-facet half, a lukewarm rating (0.25) not at all, a high
    rating fully; 0 is a low rating (an avoid signal)."""
    if weight == POSITIVE:
        return {"type": "view", "value": None}
    if weight >= 0.8:
        return {"type": "rating",
                "value": (0.7 + 0.3 * (min(weight, 1.0) - 0.8) / 0.2) * rating_max}
    if weight > 0.0:
        return {"type": "rating", "value": 0.6 * rating_max}
    return {"type": "rating", "value": 0.0}


def grouped_facets(history: Sequence[UserEvent], vectors: Mapping[str, Vector],
                   grouping: GroupingInputs) -> list[FacetSignal]:
    """The like-facets a first profile refresh would hold for this history (see the
    module notes), plus the avoid signal.

    Each group's strength is a refresh's (`drafting.new_facets`: the geometric mean of
    its events' support and its share of the events read), and the groups go through
    the profile's own merge (`merge_profile`, the tenant's rules): a new facet starts at
    eta x that strength, so a small group below the archive
    floor never becomes a facet, and a facet keeps its newest `max_evidence` events, whose
    unit mean item vector is its centroid, as serving computes it."""
    recent = list(history[-GROUPED_EVENTS:])
    if not recent:
        return _avoid_signal(history, vectors)
    events = [Event(id=n + 1, event_id=e.event_id or f"e{n}",
                    **_event_kind(e.weight, grouping.rating_max), item_id=e.item_id,
                    text=None, ts=datetime.fromtimestamp(e.ts, UTC))
              for n, e in enumerate(recent)]
    ids = {e.item_id for e in recent}
    groups = group_events(events, {}, {i: vectors[i] for i in ids if i in vectors}, {},
                          rating_max=grouping.rating_max, weights=grouping.weights,
                          known_facts={i: grouping.facts[i] for i in ids
                                       if i in grouping.facts})
    # A refresh's strength for a new facet (`drafting.new_facets`): the geometric mean of
    # how well its events back it and its share of the events read.
    new = [NewFacet(label=str(n), description="",
                    strength=math.sqrt(evidence_support(g.events, g.polarity,
                                                        grouping.rating_max) * g.stats.share),
                    polarity=g.polarity, evidence=tuple(g.event_ids), embedding=())
           for n, g in enumerate(groups) if g.nameable]
    merged = [f for f in merge_profile([], new, events[-1].ts, grouping.rules,
                                       new_id=lambda f: f.label) if not f.archived]
    kept = [f for f in merged if f.polarity == "like"]
    item_of = {e.event_id: e.item_id for e in events}
    centroids = []
    for f in kept:
        items = tuple(i for e in f.evidence if (i := item_of.get(e)) is not None)
        centroid = unit_mean([vectors[i] for i in items if i in vectors])
        if centroid is not None:
            centroids.append((f.strength, centroid, items))
    total = sum(strength for strength, _, _ in centroids)
    facets = [FacetSignal(strength=strength / total, long_term=False, avoid=False,
                          centroid=centroid, items=items)
              for strength, centroid, items in centroids]
    # The avoid signal as serving makes it (`features.profile_signals`): centred on the
    # kept avoid-facets' evidence, its strength the negative share of the newest
    # `MAX_HISTORY` events (what a request reads), two negatives at least.
    avoid_members = [vectors[i] for f in merged if f.polarity == "avoid" for e in f.evidence
                     if (i := item_of.get(e)) is not None and i in vectors]
    served = history[-MAX_HISTORY:]
    return [*facets, *avoid_signal(sum(1 for e in served if e.weight <= 0.0), len(served),
                                   unit_mean(avoid_members))]


FACET_POOL = 50  # the "facet" source's candidates, as serving gathers for k=10
FACET_FLOOR = 3  # every like-facet brings at least this many (RankingParams.facet_floor)


def facet_quotas(strengths: Sequence[float], pool: int, floor: int) -> list[int]:
    """Candidates each like-facet should bring, in proportion to its strength."""
    total = sum(max(s, 0.0) for s in strengths)
    if total <= 0:
        return [floor for _ in strengths]
    # The epsilon keeps float noise (50 * 0.6 / 1.0000000000000002) from adding one.
    return [max(floor, math.ceil(pool * max(s, 0.0) / total - 1e-9)) for s in strengths]


def facet_hits(facets: Sequence[FacetSignal], item_ids: Sequence[str], matrix: Vector | None,
               pool: int, exclude: set[str], floor: int = FACET_FLOOR) -> dict[str, SourceHit]:
    """The "facet" source at training time, gathered as serving gathers it from Chroma
    (`service.recommend.hybrid`): each like-facet brings its quota (`facet_quotas` of
    `pool`) of nearest unconsumed items to its centroid, and the union is scored and
    ranked by the best strength x cosine over the like-facets (ties by id)."""
    likes = [f for f in facets if not f.avoid]
    if matrix is None or not likes or len(item_ids) == 0:
        return {}
    centroids = np.stack([f.centroid for f in likes])
    strengths = np.array([f.strength for f in likes], dtype=np.float32)[:, None]
    sims = centroids @ matrix.T
    found: set[int] = set()
    for row, quota in zip(sims, facet_quotas([f.strength for f in likes], pool, floor),
                          strict=True):
        ask = min(quota + len(exclude), len(row))
        nearest = np.argpartition(-row, ask - 1)[:ask] if ask < len(row) else np.arange(len(row))
        taken = 0
        for j in sorted(nearest.tolist(), key=lambda j: (-float(row[j]), j)):
            if item_ids[j] in exclude:
                continue
            found.add(j)
            taken += 1
            if taken == quota:
                break
    best = (strengths * np.clip(sims, 0.0, None)).max(axis=0)
    ranked = sorted(found, key=lambda j: (-float(best[j]), item_ids[j]))
    return {item_ids[j]: SourceHit(score=float(best[j]), rank=n) for n, j in enumerate(ranked)}
