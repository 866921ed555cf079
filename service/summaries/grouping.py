"""Deterministic grouping of a user's unread events into candidate interests.

Before any model call, the events no earlier refresh has read are grouped by what
they are about; the model later only names each group, so a facet's evidence is its
group's events, exact by construction.

- Each distinct item (and each text event: search, post) is a point. An item's
  features join two unit vectors, weighted: its stored vector and its tags, genres
  and category as a bag weighted by each tag's inverse document frequency in the
  tenant's catalog (`tag_weights`: a tag most items carry, like "drama" among movies,
  says little about what a user likes; a rarer one, like "horror" or "war", says
  more). A text's features are its embedding (its content words only when it has
  none). The cosine of two points is then a blend of vector cosine and tf-idf tag
  cosine, so two items sharing distinctive genres stay together even when their
  descriptions differ. An item without a vector groups by its tags alone.
- Low ratings (at most half the scale), dislikes and skips are grouped apart, into
  avoid-groups; everything else into like-groups. Declarations are not grouped:
  they seed facets in the user's own words (see the profile refresh).
- Points are clustered with scikit-learn's average-linkage agglomerative clustering
  under a cosine distance threshold (the number of groups follows the activity).
  Above `DIRECT_POINTS` distinct points, a seeded k-means first reduces them to
  micro-clusters, so 10,000 events group in well under a second.
- Inputs are sorted (events by id, points by key) and every random step is seeded:
  the same events always give the same groups, in whatever order they came.
- Groups are capped (`MAX_LIKE_GROUPS`, `MAX_AVOID_GROUPS`): single events and the
  smallest groups join the nearest kept group when it is close enough, else they are
  dropped as noise (a user with few events keeps their single events).
- Text that reads as instructions to a model (`injection.py`) is flagged: the event
  still counts as evidence, but its words never reach the group's statistics, and a
  group with nothing but flagged text yields no facet.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

import numpy as np
import numpy.typing as npt
from sklearn.cluster import AgglomerativeClustering, KMeans

from service.catalog.models import Item
from service.catalog.service import normal_tag
from service.core.schemas import Polarity
from service.ingest.models import Event
from service.summaries.injection import reads_as_instructions
from service.summaries.schemas import (
    EXAMPLE_TITLES,
    MAX_AVOID_GROUPS,
    MAX_LIKE_GROUPS,
    TOP_TAGS,
    GroupStats,
)

Vector = npt.NDArray[np.float32]

VECTOR_WEIGHT = 0.5  # the rest is the tag bag's
# Average-linkage cosine distance below which points share a group. Measured with
# MiniLM: items of one genre sit at 0.25-0.5, of different genres at 0.7-0.95.
DISTANCE_THRESHOLD = 0.6
MERGE_SIMILARITY = 0.2  # a single event or overflow group joins a group at least this close
FEW_EVENTS = 8  # below this many events of a polarity, single events stay groups
DIRECT_POINTS = 600  # above: k-means micro-clusters first
MICRO_CLUSTERS = 200
SEED = 0
TEXT_TYPES = frozenset({"search", "post"})
AVOID_TYPES = frozenset({"dislike", "skip"})
YEAR = re.compile(r"\b(?:1[5-9]|20)\d\d\b")
WORD = re.compile(r"[^\W\d_]{3,}")
STOPWORDS = frozenset("""
the and for with from that this what which who whom how why when where are was were
been being have has had does did doing not but any all some more most best good great
very just about into over under than then them they their there these those your you
our out off its his her she him one two new old like likes love loves want wants need
looking look find show shows watch watching read reading buy year years film films movie
movies book books video videos item items thing things really much many also only
""".split())


def tag_weights(document_frequency: Mapping[str, int], documents: int) -> dict[str, float]:
    """Smoothed inverse document frequency per tag (scikit-learn's `smooth_idf` form):
    `ln((1 + n) / (1 + df)) + 1`, so a tag on every item weighs 1 and rarer ones more.
    Tags missing here (new since the counts were taken) get `unseen_tag_weight(n)`."""
    return {t: math.log((1 + documents) / (1 + df)) + 1.0
            for t, df in document_frequency.items()}


def unseen_tag_weight(documents: int) -> float:
    return math.log(1 + documents) + 1.0


def polarity_of(event: Event, rating_max: float) -> Polarity:
    """Low ratings (at most half the scale), dislikes and skips are avoid signals."""
    if event.type in AVOID_TYPES:
        return "avoid"
    if event.type == "rating" and event.value is not None and rating_max > 0:
        return "avoid" if event.value <= 0.5 * rating_max else "like"
    if event.type == "declared" and event.value is not None and event.value < 0:
        return "avoid"
    return "like"


def is_text_event(event: Event) -> bool:
    """Events grouped by their text's vector: searches and posts not about an item."""
    return bool(event.text) and event.item_id is None and event.type != "declared"


def terms(text: str) -> list[str]:
    """Content words of a search or post: lowercased, no stopwords, years or numbers."""
    return [w for w in WORD.findall(YEAR.sub(" ", text.casefold())) if w not in STOPWORDS]


@dataclass(frozen=True)
class ItemFacts:
    """What grouping uses of a catalog item: clean tags and category, title for people."""

    title: str
    tags: tuple[str, ...]
    category: str | None
    flagged: bool

    @classmethod
    def of(cls, item: Item) -> ItemFacts:
        flagged = reads_as_instructions(item.title) or reads_as_instructions(item.description)
        raw = [*(item.tags or []), *_attribute_genres(item)]
        tags = tuple(dict.fromkeys(
            normal_tag(t) for t in raw
            if isinstance(t, str) and t.strip() and not reads_as_instructions(t)
            and not YEAR.fullmatch(t.strip())))
        category = item.category if item.category and not reads_as_instructions(
            item.category) else None
        return cls(title=item.title, tags=tags[:12],
                   category=category.casefold() if category else None, flagged=flagged)


def _attribute_genres(item: Item) -> list[str]:
    genres = (item.attributes or {}).get("genres")
    return [g for g in genres if isinstance(g, str)] if isinstance(genres, list) else []


@dataclass
class EventGroup:
    """A candidate interest: its events (the evidence), polarity, statistics, centroid."""

    polarity: Polarity
    events: list[Event]
    stats: GroupStats
    centroid: Vector  # mean of the members' item/text vectors, unit length (or zeros)
    tags: list[str] = field(default_factory=list)  # every tag and term seen, for label checks
    titles: list[str] = field(default_factory=list)  # every member item's title, same

    @property
    def event_ids(self) -> list[str]:
        return [e.event_id for e in self.events]

    @property
    def nameable(self) -> bool:
        """Something other than flagged text to name it by."""
        return bool(self.stats.top_tags or self.stats.top_categories)


@dataclass
class _Point:
    key: tuple[str, str]
    events: list[Event]
    vector: Vector | None
    tags: tuple[str, ...]
    flagged: bool


def group_events(
    events: Sequence[Event],
    items: Mapping[str, Item],
    item_vectors: Mapping[str, Vector],
    text_vectors: Mapping[int, Vector],
    *,
    rating_max: float,
    max_like: int = MAX_LIKE_GROUPS,
    max_avoid: int = MAX_AVOID_GROUPS,
    weights: TagWeights | None = None,
    known_facts: Mapping[str, ItemFacts] | None = None,
) -> list[EventGroup]:
    """Group events (declarations aside) into at most max_like + max_avoid groups.

    `item_vectors` maps item ids to their stored vectors, `text_vectors` text events'
    primary keys to their embeddings; either may miss entries. `weights` are the
    catalog's tag weights (`tag_weights`); without them every tag weighs the same.
    `known_facts` are `ItemFacts` already made (training groups thousands of histories
    over one catalog and makes them once): they win over `items`' rows, and an item they
    hold needs no row. Groups come largest first, likes before avoids.
    """
    known = known_facts or {}
    facts = {**{item_id: ItemFacts.of(item) for item_id, item in items.items()
                if item_id not in known}, **known}
    ordered = sorted((e for e in events if e.type != "declared"), key=lambda e: e.id)
    groups: list[EventGroup] = []
    # A group's share is of all the events read, both polarities: five low ratings next
    # to sixty high ones are a small dislike, not an interest as strong as the likes.
    total = len(ordered)
    for polarity, cap in (("like", max_like), ("avoid", max_avoid)):
        mine = [e for e in ordered if polarity_of(e, rating_max) == polarity]
        points = _points(mine, facts, item_vectors, text_vectors)
        clusters = _cluster(points, weights)
        kept = _cap(clusters, cap, keep_single=len(mine) < FEW_EVENTS)
        for members in kept:
            groups.append(_group(polarity, members, facts, total, rating_max))  # type: ignore[arg-type]
    return groups


def _points(events: Sequence[Event], facts: Mapping[str, ItemFacts],
            item_vectors: Mapping[str, Vector], text_vectors: Mapping[int, Vector],
            ) -> list[_Point]:
    by_key: dict[tuple[str, str], _Point] = {}
    for e in events:
        if e.item_id is not None:
            key = ("item", e.item_id)
            point = by_key.get(key)
            if point is None:
                item = facts.get(e.item_id)
                tags = (*item.tags, *([f"category:{item.category}"] if item.category else [])
                        ) if item else ()
                point = by_key[key] = _Point(key, [], item_vectors.get(e.item_id), tags,
                                             bool(item and item.flagged))
            point.events.append(e)
        elif is_text_event(e):
            flagged = reads_as_instructions(e.text)
            words = () if flagged else tuple(dict.fromkeys(terms(e.text or "")))
            key = ("text", f"{e.id:020d}")
            by_key[key] = _Point(key, [e], text_vectors.get(e.id), words, flagged)
    return [by_key[k] for k in sorted(by_key)]


@dataclass(frozen=True)
class TagWeights:
    """Inverse document frequencies of the catalog's tags (`tag_weights`), and the
    weight of a tag they do not know."""

    known: Mapping[str, float]
    unseen: float

    @classmethod
    def from_counts(cls, document_frequency: Mapping[str, int], documents: int
                    ) -> TagWeights:
        """From a catalog's tag document frequencies (`catalog.service.tag_counts`)."""
        return cls(tag_weights(document_frequency, documents), unseen_tag_weight(documents))

    def of(self, tag: str) -> float:
        return self.known.get(tag, self.unseen)


def _features(points: Sequence[_Point], weights: TagWeights | None = None,
              ) -> npt.NDArray[np.float64]:
    """Rows of [sqrt(w)·vector, sqrt(1-w)·tag bag], each part unit length when present;
    the bag holds each tag's weight (1 without `weights`)."""
    vocabulary = {t: n for n, t in enumerate(sorted({t for p in points for t in p.tags}))}
    dims = next((len(p.vector) for p in points if p.vector is not None), 0)
    x = np.zeros((len(points), dims + len(vocabulary)), dtype=np.float64)
    for row, p in enumerate(points):
        if p.vector is not None and dims:
            v = np.asarray(p.vector, dtype=np.float64)
            norm = np.linalg.norm(v)
            if norm > 0:
                x[row, :dims] = np.sqrt(VECTOR_WEIGHT) * v / norm
        # A text's words rarely repeat across texts: its vector speaks for it, and its
        # words only when it has no vector.
        if p.tags and (p.key[0] == "item" or p.vector is None):
            cols = [dims + vocabulary[t] for t in p.tags]
            # Text words are not catalog tags: they weigh 1, like any tag without weights.
            bag = np.array([weights.of(t) if weights is not None and p.key[0] == "item"
                            else 1.0 for t in p.tags], dtype=np.float64)
            x[row, cols] = np.sqrt(1.0 - VECTOR_WEIGHT) * bag / np.linalg.norm(bag)
    return x


def _unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


@dataclass
class _Cluster:
    points: list[_Point]
    centroid: npt.NDArray[np.float64]  # unit mean of the members' feature rows

    @property
    def size(self) -> int:
        return sum(len(p.events) for p in self.points)

    @property
    def first_id(self) -> int:
        return min(e.id for p in self.points for e in p.events)


def _cluster(points: Sequence[_Point], weights: TagWeights | None = None) -> list[_Cluster]:
    """Agglomerative clusters of the points with features; featureless points are dropped."""
    x = _features(points, weights)
    present = [n for n in range(len(points)) if np.any(x[n])]
    if not present:
        return []
    x, pts = _unit(x[present]), [points[n] for n in present]
    sizes = np.array([len(p.events) for p in pts], dtype=np.float64)
    if len(pts) == 1:
        labels = np.zeros(1, dtype=np.int64)
    elif len(pts) <= DIRECT_POINTS:
        labels = _agglomerate(x)
    else:
        # Random (seeded) initial centres: k-means++ would cost seconds at this size,
        # and the micro-clusters are only a first pass before the real grouping.
        micro = KMeans(n_clusters=MICRO_CLUSTERS, init="random", random_state=SEED, n_init=1,
                       max_iter=50).fit_predict(x, sample_weight=sizes)
        centres = np.zeros((MICRO_CLUSTERS, x.shape[1]))
        np.add.at(centres, micro, x * sizes[:, None])
        used = np.flatnonzero(np.any(centres, axis=1))
        top = _agglomerate(_unit(centres[used]))
        relabel = np.full(MICRO_CLUSTERS, -1, dtype=np.int64)
        relabel[used] = top
        labels = relabel[micro]
    clusters = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        centroid = _unit((x[members] * sizes[members, None]).sum(axis=0))
        clusters.append(_Cluster([pts[n] for n in members], centroid))
    return sorted(clusters, key=lambda c: (-c.size, c.first_id))


def _agglomerate(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    if len(x) == 1:
        return np.zeros(1, dtype=np.int64)
    model = AgglomerativeClustering(n_clusters=None, distance_threshold=DISTANCE_THRESHOLD,
                                    metric="cosine", linkage="average")
    return np.asarray(model.fit_predict(x), dtype=np.int64)


def _cap(clusters: list[_Cluster], cap: int, *, keep_single: bool) -> list[list[_Point]]:
    """At most `cap` groups; single events (unless few) and overflow join the nearest
    kept group when it is close enough, else they are dropped as noise."""
    kept: list[_Cluster] = []
    rest: list[_Cluster] = []
    for c in clusters:  # largest first
        if len(kept) < cap and (c.size > 1 or keep_single):
            kept.append(c)
        else:
            rest.append(c)
    if not kept:
        return []
    members = [list(c.points) for c in kept]
    centroids = np.stack([c.centroid for c in kept])
    for c in rest:
        similarity = centroids @ c.centroid
        best = int(np.argmax(similarity))
        if similarity[best] >= MERGE_SIMILARITY:
            members[best].extend(c.points)
    return members


def _group(polarity: Polarity, points: Sequence[_Point], facts: Mapping[str, ItemFacts],
           total: int, rating_max: float) -> EventGroup:
    events = sorted((e for p in points for e in p.events), key=lambda e: e.id)
    tags: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    titles: Counter[str] = Counter()
    flagged = 0
    vectors: list[Vector] = []
    for p in points:
        n = len(p.events)
        if p.vector is not None:
            vectors.extend([p.vector] * n)
        if p.flagged:
            flagged += n
            continue
        for t in p.tags:
            if t.startswith("category:"):
                categories[t.removeprefix("category:")] += n
            else:
                tags[t] += n
        if p.key[0] == "item" and p.key[1] in facts:
            titles[facts[p.key[1]].title] += n
    ratings = [e.value for e in events if e.type == "rating" and e.value is not None]
    stats = GroupStats(
        count=len(events), share=round(len(events) / max(total, 1), 4),
        event_types=dict(sorted(Counter(e.type for e in events).items(),
                                key=lambda kv: (-kv[1], kv[0]))),
        mean_rating=round(fmean(ratings), 2) if ratings else None,
        first_ts=min(e.ts for e in events), last_ts=max(e.ts for e in events),
        top_tags=dict(_top(tags, TOP_TAGS)), top_categories=dict(_top(categories, 3)),
        example_titles=[t for t, _ in _top(titles, EXAMPLE_TITLES)], flagged=flagged,
    )
    centroid = np.zeros(0, dtype=np.float32)
    if vectors:
        mean = np.mean(np.stack(vectors).astype(np.float64), axis=0)
        centroid = _unit(mean).astype(np.float32)
    return EventGroup(polarity=polarity, events=events, stats=stats, centroid=centroid,
                      tags=sorted({*tags, *categories}), titles=sorted(titles))


def _top(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    """Most frequent first, ties alphabetical (Counter.most_common keeps insertion order)."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
