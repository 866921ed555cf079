"""Pseudo-facets: what stands in for a profile's facets when the ranker is trained.

The profile's facets are not known at training time. Given the catalog (`GroupingInputs`),
pseudo-facets are what a profile refresh would make of the user's history (the same
grouping code, `summaries/grouping.py`); without it, k-means groups of the user's positive
items. Low-rated items form one avoid signal either way. `facet_hits` is the "facet"
source they retrieve, as Chroma does at serving time. See `ranker.py`'s module notes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt

from service.catalog.models import Item
from service.ingest.models import Event
from service.summaries.grouping import ItemFacts, TagWeights, group_events
from service.training.contract import FacetSignal, SourceHit, UserEvent
from service.training.data import POSITIVE

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
                avoid=False, centroid=_unit(matrix[members].mean(axis=0))))
    return facets + _avoid_signal(history, vectors)


GROUPED_EVENTS = 1000  # the newest events a refresh groups (Settings.summary_max_events)


@dataclass(frozen=True)
class GroupingInputs:
    """What grouping needs of the catalog: the items (tags, category, title) and the
    tenant's tag weights."""

    items: Mapping[str, Item]
    weights: TagWeights | None
    rating_max: float = 5.0

    @cached_property
    def facts(self) -> dict[str, ItemFacts]:
        """Each item's `ItemFacts`, made once for every history grouped."""
        return {item_id: ItemFacts.of(item) for item_id, item in self.items.items()}


def _avoid_signal(history: Sequence[UserEvent], vectors: Mapping[str, Vector]
                  ) -> list[FacetSignal]:
    negatives = [e for e in history if e.weight <= 0.0 and e.item_id in vectors]
    if len(negatives) < 2:
        return []
    matrix = np.stack([vectors[e.item_id] for e in negatives[-PSEUDO_FACET_ITEMS:]])
    return [FacetSignal(strength=min(1.0, len(negatives) / max(len(history), 1)),
                        long_term=False, avoid=True, centroid=_unit(matrix.mean(axis=0)))]


def grouped_facets(history: Sequence[UserEvent], vectors: Mapping[str, Vector],
                   grouping: GroupingInputs) -> list[FacetSignal]:
    """The like-groups a refresh would make of this history, as facet signals (see the
    module notes), plus the avoid signal."""
    recent = list(history[-GROUPED_EVENTS:])
    events = [Event(id=n + 1, event_id=e.event_id or f"e{n}",
                    type="like" if e.weight > 0 else "dislike", item_id=e.item_id,
                    value=None, text=None, ts=datetime.fromtimestamp(e.ts, UTC))
              for n, e in enumerate(recent)]
    ids = {e.item_id for e in recent}
    items = {i: grouping.items[i] for i in ids if i in grouping.items}
    groups = group_events(events, items, {i: vectors[i] for i in ids if i in vectors}, {},
                          rating_max=grouping.rating_max, weights=grouping.weights,
                          known_facts=grouping.facts)
    likes = [g for g in groups if g.polarity == "like" and len(g.centroid)]
    total = sum(g.stats.count for g in likes)
    facets = [FacetSignal(strength=g.stats.count / total, long_term=False, avoid=False,
                          centroid=g.centroid.astype(np.float32)) for g in likes]
    return facets + _avoid_signal(history, vectors)


def facet_hits(facets: Sequence[FacetSignal], item_ids: Sequence[str], matrix: Vector | None,
               n: int, exclude: set[str]) -> dict[str, SourceHit]:
    """The "facet" source at training time: items nearest the like-pseudo-facets, scored as
    the service scores Chroma's neighbours (best strength x cosine)."""
    likes = [f for f in facets if not f.avoid]
    if matrix is None or not likes or len(item_ids) == 0:
        return {}
    centroids = np.stack([f.centroid for f in likes])
    strengths = np.array([f.strength for f in likes], dtype=np.float32)[:, None]
    best = (strengths * (centroids @ matrix.T)).max(axis=0)
    order = np.argsort(-best, kind="stable")
    hits: dict[str, SourceHit] = {}
    for j in order[: n + len(exclude)].tolist():
        if item_ids[j] in exclude:
            continue
        hits[item_ids[j]] = SourceHit(score=float(best[j]), rank=len(hits))
        if len(hits) == n:
            break
    return hits
