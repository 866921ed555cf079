"""Step 3: the list itself, built one of three ways, each ending in scored, diversified picks.

- `rank_hybrid` (the tenant has a trained artifact): candidates from the facets and
  every trained source, one `features.py` row each, scored by the learned ranker (the
  fixed blend of `ranking.py` without one), avoid-facets drop what lies squarely on
  them, MMR picks the list, and `reasons.py` gives each pick its strongest reason.
- `rank_from_profile` (no artifact yet): facet retrieval only, scored by the best
  like-facet's strength x similarity, as before models existed.
- `rank_popular` (nothing personal to go on): the tenant's popular items in tiers.

No LLM here; `service.py` may replace a few template sentences afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.ingest.models import Event
from service.profiles.schemas import EvidenceOut
from service.profiles.service import EvidenceEvent, evidence_and_items
from service.recommend.candidates import (
    ActiveFacet,
    CatalogRow,
    UserHistory,
    catalog_rows,
    evidence_with_items,
    item_vectors,
    retrieve,
)
from service.recommend.explain import (
    event_explanation,
    popular_explanation,
    template_explanation,
)
from service.recommend.ranking import (
    BLEND_WEIGHTS,
    Matrix,
    RankingParams,
    blend,
    calibrated_mmr,
    facet_quotas,
    fuse,
    mmr,
    normalized,
    tag_shares,
)
from service.recommend.reasons import (
    SEQUENCE_EVIDENCE,
    Reason,
    ReasonInputs,
    recent_positives,
    strongest_reason,
)
from service.recommend.schemas import (
    Because,
    ExplanationSource,
    PopularTier,
    ReasonKind,
    Scoring,
    Source,
    TraceSourceHit,
)
from service.recommend.trace import StoredCandidate
from service.training.contract import (
    ALL_SOURCES,
    CandidateSource,
    FacetSignal,
    SourceHit,
    TenantModels,
)
from service.training.features import (
    FEATURE_NAMES,
    build_features,
    facet_scores,
    profile_signals,
)
from service.users.models import User
from service.vectors.store import VectorStore

POPULAR_WINDOW_DAYS = 30
# Where a popular list's items come from, tried in this order until it holds k.
POPULAR_TIERS: tuple[PopularTier, ...] = ("recent", "all_time", "catalog")
EVIDENCE_SHOWN = 5  # evidence events per `because`, closest to the item first
TRACE_CANDIDATES = 100  # hybrid lists keep this many candidates (best first) in the trace

Status = Literal["returned", "dropped_avoid", "dropped_score", "not_selected"]
Explain = Literal["template", "llm"]


@dataclass(frozen=True)
class RecommendationRequest:
    k: int = 10
    explain: Explain = "template"
    category: str | None = None


@dataclass
class Pick:
    """One item of the list being built, with everything the trace keeps about it."""

    item_id: str
    title: str
    score: float
    because: Because | None
    explanation: str
    explanation_source: ExplanationSource = "template"
    explanation_problem: str | None = None
    llm: dict[str, Any] | None = None
    given: list[EvidenceEvent] = field(default_factory=list)  # the evidence shown, as data
    facet_description: str = ""
    popular_tier: PopularTier | None = None


@dataclass
class Ranked:
    source: Source
    picks: list[Pick]
    candidates: list[StoredCandidate]
    excluded: dict[str, int]
    quotas: dict[str, int] = field(default_factory=dict)
    calibration_target: dict[str, float] | None = None  # hybrid lists calibrated to it


def _r(x: float) -> float:
    return round(float(x), 6)


def _similarity_matrix(facets: Sequence[ActiveFacet], items: Matrix) -> Matrix:
    if not facets:
        return np.zeros((0, len(items)), dtype=np.float32)
    sims: Matrix = normalized(np.stack([f.vector for f in facets])) @ items.T
    return sims


def _rounded_columns(matrix: Matrix) -> list[list[float]]:
    """One list per candidate (column), facets in trace order; rounded for storage."""
    rows: list[list[float]] = np.round(matrix.T.astype(np.float64), 4).tolist()
    return rows


def rank_from_profile(
    session: Session, user: User, vectors: VectorStore, likes: Sequence[ActiveFacet],
    avoids: Sequence[ActiveFacet], consumed: set[str], request: RecommendationRequest,
    params: RankingParams,
) -> Ranked:
    quotas = facet_quotas([f.strength for f in likes], params.pool(request.k),
                          params.facet_floor)
    matrix = normalized(np.stack([f.vector for f in likes]))
    got = retrieve(session, vectors, user.tenant_id, matrix, quotas, consumed,
                   request.category, params.facet_floor)
    rows = got.rows
    rows.update(catalog_rows(session, user.tenant_id,
                             [c for c in got.candidates if c not in rows]))
    excluded = {"consumed": got.consumed_seen, "not_in_catalog": 0,
                "category": got.off_category}
    kept = []
    for item_id in got.candidates:
        row = rows.get(item_id)
        if row is None:
            excluded["not_in_catalog"] += 1
        elif request.category is not None and row.category != request.category:
            excluded["category"] += 1
        else:
            kept.append(item_id)
    found = item_vectors(vectors, user.tenant_id, {i: rows[i].version for i in kept})
    excluded["not_in_catalog"] += sum(1 for i in kept if i not in found)
    kept = [i for i in kept if i in found]
    # Ties broken by id, so the same inputs always give the same list.
    kept.sort()

    items = (np.stack([found[i] for i in kept]) if kept
             else np.zeros((0, matrix.shape[1]), dtype=np.float32))
    like_sims, avoid_sims = _similarity_matrix(likes, items), _similarity_matrix(avoids, items)
    fusion = fuse([f.strength for f in likes], like_sims, [f.strength for f in avoids],
                  avoid_sims, params)
    # As Python lists: indexing numpy arrays one element at a time is slow.
    raw_score, dropped, best_of = (fusion.score.tolist(), fusion.dropped.tolist(),
                                   fusion.best.tolist())
    eligible = sorted((j for j in range(len(kept)) if not dropped[j] and raw_score[j] > 0),
                      key=lambda j: -raw_score[j])
    chosen = [(eligible[i], objective) for i, objective in
              mmr(fusion.score[eligible], items[eligible], request.k, params.mmr_lambda)]

    # Evidence only for the facets the list cites, items closest to each pick first.
    cited = {best_of[j] for j, _ in chosen}
    evidence, evidence_items = evidence_and_items(
        session, user, {e for n in cited for e in likes[n].evidence})
    evidence_vectors = item_vectors(vectors, user.tenant_id,
                                    {i: item.version for i, item in evidence_items.items()})
    backing = {n: FacetEvidence.of(likes[n], evidence, evidence_vectors) for n in cited}
    picks = []
    for j, _ in chosen:
        best = best_of[j]
        facet = likes[best]
        shown = backing[best].closest_to(items[j])
        picks.append(Pick(
            item_id=kept[j], title=rows[kept[j]].title, score=_r(raw_score[j]),
            because=Because(
                facet_id=facet.facet_id, label=facet.label, strength=_r(facet.strength),
                similarity=_r(like_sims[best, j]),
                evidence=[EvidenceOut(**vars(e)) for e in shown]),
            explanation=template_explanation(facet.label, shown), given=shown,
            facet_description=facet.description))

    rank_of = {j: (rank, objective) for rank, (j, objective) in enumerate(chosen)}
    sims = _rounded_columns(np.vstack([like_sims, avoid_sims]))
    base, penalty, score = (np.round(a, 6).tolist()
                            for a in (fusion.base, fusion.penalty, fusion.score))
    candidates = []
    for j in sorted(range(len(kept)), key=lambda j: (-raw_score[j], kept[j])):
        status: Status = ("returned" if j in rank_of else "dropped_avoid" if dropped[j]
                          else "dropped_score" if raw_score[j] <= 0 else "not_selected")
        candidates.append(StoredCandidate(
            item_id=kept[j], title=rows[kept[j]].title, sims=sims[j],
            base_score=base[j], avoid_penalty=penalty[j], score=score[j],
            best_facet=likes[best_of[j]].facet_id, status=status,
            mmr_rank=rank_of[j][0] if j in rank_of else None,
            mmr_objective=_r(rank_of[j][1]) if j in rank_of else None))
    excluded["dropped_avoid"] = sum(dropped)
    excluded["dropped_score"] = sum(1 for c in candidates if c.status == "dropped_score")
    excluded["retrieval_widened"] = int(got.widened)
    return Ranked("profile", picks, candidates, excluded,
                  {f.facet_id: q for f, q in zip(likes, quotas, strict=True)})


@dataclass
class FacetEvidence:
    """A facet's evidence that still exists: item events with their vectors, and
    text events (searches, declarations), newest first."""

    with_items: list[EvidenceEvent]
    vectors: Matrix
    text_only: list[EvidenceEvent]
    newest_first: list[float]  # minus each item event's timestamp: the tie-break

    @classmethod
    def of(cls, facet: ActiveFacet, evidence: dict[str, EvidenceEvent],
           vectors: dict[str, npt.NDArray[np.float32]]) -> FacetEvidence:
        own = [evidence[e] for e in facet.evidence if e in evidence]
        with_items = [e for e in own if e.item_id in vectors]
        text_only = sorted((e for e in own if e.item_id not in vectors),
                           key=lambda e: e.ts, reverse=True)
        matrix = (np.stack([vectors[e.item_id or ""] for e in with_items]) if with_items
                  else np.zeros((0, 0), dtype=np.float32))
        return cls(with_items, matrix, text_only, [-e.ts.timestamp() for e in with_items])

    def closest_to(self, item: npt.NDArray[np.float32]) -> list[EvidenceEvent]:
        """Up to EVIDENCE_SHOWN events, the items most like `item` first."""
        ranked = self.with_items
        if ranked:
            sims = (self.vectors @ item).tolist()
            order = sorted(range(len(ranked)), key=lambda n: (-sims[n], self.newest_first[n]))
            ranked = [ranked[n] for n in order]
        return (ranked + self.text_only)[:EVIDENCE_SHOWN]


PopularRow = tuple[str, str, str, int]  # item id, title, vector version, events counted


def _popular_page(session: Session, tenant_id: int, at: datetime, since: datetime | None,
                  category: str | None, limit: int, offset: int) -> list[PopularRow]:
    """Items by their events in [since, at] (all up to `at` without `since`), most first.

    Reads events through ix_events_tenant_ts (tenant, then a range on ts).
    """
    events = func.count(Event.id)
    query = (
        select(Event.item_id, Item.title, Item.indexed_hash, events)
        .join(Item, and_(Item.tenant_id == Event.tenant_id, Item.item_id == Event.item_id))
        .where(Event.tenant_id == tenant_id, Event.ts <= at)
        .group_by(Event.item_id, Item.title, Item.indexed_hash)
        .order_by(events.desc(), Event.item_id)
        .limit(limit).offset(offset)
    )
    if since is not None:
        query = query.where(Event.ts >= since)
    if category is not None:
        query = query.where(Item.category == category)
    return [(str(item_id), str(title), version or "", int(count))
            for item_id, title, version, count in session.execute(query)]


def _catalog_page(session: Session, tenant_id: int, category: str | None, limit: int,
                  offset: int) -> list[PopularRow]:
    """The catalog by item id: a fixed order that favours nothing."""
    query = (select(Item.item_id, Item.title, Item.indexed_hash)
             .where(Item.tenant_id == tenant_id)
             .order_by(Item.item_id).limit(limit).offset(offset))
    if category is not None:
        query = query.where(Item.category == category)
    return [(item_id, title, version or "", 0)
            for item_id, title, version in session.execute(query)]


def _near_avoids(vectors: VectorStore, tenant_id: int, avoids: Sequence[ActiveFacet],
                 rows: Sequence[PopularRow], params: RankingParams,
                 ) -> tuple[Matrix, npt.NDArray[np.bool_]]:
    """Avoid-facets x rows similarities, and which rows an avoid-facet drops."""
    dropped = np.zeros(len(rows), dtype=np.bool_)
    avoid_sims: Matrix = np.zeros((len(avoids), len(rows)), dtype=np.float32)
    if avoids and rows:
        found = item_vectors(vectors, tenant_id, {r[0]: r[2] for r in rows})
        dim = len(avoids[0].vector)
        items = np.stack([found.get(r[0], np.zeros(dim, dtype=np.float32)) for r in rows])
        avoid_sims = _similarity_matrix(avoids, items)
        dropped = fuse([], np.zeros((0, len(rows)), dtype=np.float32),
                       [f.strength for f in avoids], avoid_sims, params).dropped
    return avoid_sims, dropped


def rank_popular(
    session: Session, user: User, vectors: VectorStore, avoids: Sequence[ActiveFacet],
    consumed: set[str], at: datetime, request: RecommendationRequest, params: RankingParams,
) -> Ranked:
    """k items the user has not used, from three tiers in turn, each pick labelled by its tier:
    the tenant's most-used items of the last 30 days, then of all time, then the rest of
    the catalog by item id. A heavy user or a quiet tenant still gets a full list, and
    the list never claims more popularity than the item has.

    Avoid-facets still apply (items squarely on one are dropped): a stated dislike
    holds even before there is anything to like.
    """
    window = at - timedelta(days=POPULAR_WINDOW_DAYS)

    def fetch(tier: PopularTier, limit: int, offset: int) -> list[PopularRow]:
        if tier == "catalog":
            return _catalog_page(session, user.tenant_id, request.category, limit, offset)
        return _popular_page(session, user.tenant_id, at,
                             window if tier == "recent" else None, request.category, limit,
                             offset)

    seen: set[str] = set()  # every item a tier has offered, so later tiers skip it
    picks: list[Pick] = []
    candidates: list[StoredCandidate] = []
    runners_up = 0  # items not needed once the list was full; the trace keeps 2k of them
    consumed_seen = 0
    for tier in POPULAR_TIERS:
        offset = 0
        while len(picks) < request.k:
            # Enough rows for the list even when consumed items and earlier tiers' items recur.
            size = len(consumed) + len(seen) + 3 * (request.k - len(picks))
            page = fetch(tier, size, offset)
            offset += len(page)
            rows = [r for r in page if r[0] not in seen]
            seen.update(r[0] for r in rows)
            consumed_seen += sum(1 for r in rows if r[0] in consumed)
            rows = [r for r in rows if r[0] not in consumed]
            avoid_sims, dropped = _near_avoids(vectors, user.tenant_id, avoids, rows, params)
            sims = _rounded_columns(avoid_sims)
            for j, (item_id, title, _, count) in enumerate(rows):
                full = len(picks) == request.k
                if full and runners_up == 2 * request.k:
                    break
                status: Status = ("dropped_avoid" if dropped[j] else "not_selected" if full
                                  else "returned")
                if status == "returned":
                    picks.append(Pick(
                        item_id=item_id, title=title, score=float(count), because=None,
                        explanation=popular_explanation(tier, count, POPULAR_WINDOW_DAYS),
                        popular_tier=tier))
                runners_up += status == "not_selected"
                candidates.append(StoredCandidate(
                    item_id=item_id, title=title, sims=sims[j], base_score=float(count),
                    avoid_penalty=0.0, score=float(count), best_facet=None,
                    popular_events=count, popular_tier=tier, status=status))
            if len(page) < size:
                break
    excluded = {"consumed": consumed_seen,
                "dropped_avoid": sum(1 for c in candidates if c.status == "dropped_avoid")}
    return Ranked("popular", picks, candidates, excluded)




# -- the hybrid list -----------------------------------------------------------------------


def _signal(facet: ActiveFacet, centroid: npt.NDArray[np.float32] | None) -> FacetSignal:
    """A stored facet as the ranker's features see it: its evidence items' unit mean
    vector (what training's pseudo-facets are), else its own text vector."""
    return FacetSignal(strength=facet.strength, long_term=facet.horizon == "long",
                       avoid=facet.polarity == "avoid",
                       centroid=centroid if centroid is not None
                       else normalized(facet.vector[None, :])[0])


def _centroid(evidence: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32] | None:
    if not evidence:
        return None
    unit: npt.NDArray[np.float32] = normalized(
        np.mean(np.stack(evidence), axis=0, keepdims=True))[0]
    return unit


# A facet reason needs the item to carry at least this share of the facet's tag mass
# (its evidence items' most common tags, category aside), when both have tags.
FACET_TAG_MATCH = 0.25


@dataclass
class ProfileTags:
    """The like-facets' tags, from their evidence items (`ranking.tag_shares`)."""

    target: dict[str, float]  # all like-facets, each weighing its share of the strength
    per_facet: list[dict[str, float]]  # each like-facet's own, its items alike

    def __post_init__(self) -> None:
        # Each facet's shares without categories, and their mass: `match` runs for every
        # facet of every pick, so they are worked out once.
        self._own = [{t: v for t, v in shares.items() if not t.startswith("category:")}
                     for shares in self.per_facet]
        self._mass = [sum(own.values()) for own in self._own]

    def match(self, n: int, tags: Sequence[str]) -> float | None:
        """The share of facet n's tag mass (category aside) that `tags` carry; None when
        the facet or the item has no tags to compare."""
        own, mass = self._own[n], self._mass[n]
        if mass <= 0 or not tags:
            return None
        return sum(own.get(t, 0.0) for t in set(tags)) / mass


def profile_tags(likes: Sequence[ActiveFacet], evidence: dict[str, EvidenceEvent],
                 rows: dict[str, CatalogRow]) -> ProfileTags:
    """`rows` are the catalog rows of the evidence items (`evidence_with_items`)."""
    members = [[ev.item_id for e in f.evidence
                if (ev := evidence.get(e)) is not None and ev.item_id] for f in likes]
    total = sum(max(f.strength, 0.0) for f in likes)
    tag_sets: list[tuple[str, ...]] = []
    weights: list[float] = []
    per_facet: list[dict[str, float]] = []
    for facet, items in zip(likes, members, strict=True):
        tagged = [rows[i].tags for i in items if i in rows and rows[i].tags]
        per_facet.append(tag_shares(tagged, [1.0] * len(tagged)))
        for tags in tagged:
            tag_sets.append(tags)
            weights.append(max(facet.strength, 0.0) / total / len(tagged))
    return ProfileTags(tag_shares(tag_sets, weights) if total > 0 else {}, per_facet)


def _reason_facet(tags: Sequence[str], likes: Sequence[ActiveFacet], fused_best: int,
                  profile: ProfileTags) -> int:
    """The like-facet an item's facet reason names: among facets whose tags the item
    carries enough of (`FACET_TAG_MATCH`), the strongest by strength x match; -1 when
    tags rule every facet out; the fused best (strength x similarity) when there are no
    tags to go by."""
    best, best_score, compared = -1, 0.0, False
    for n, facet in enumerate(likes):
        match = profile.match(n, tags)
        if match is None:
            continue
        compared = True
        score = facet.strength * match
        if match >= FACET_TAG_MATCH and score > best_score:
            best, best_score = n, score
    return best if compared else fused_best


def retrieval_vectors(facets: Sequence[ActiveFacet],
                      centroids: Sequence[npt.NDArray[np.float32] | None]) -> Matrix:
    """What each like-facet asks the item collection with: the unit sum of its text
    vector (label, description, top tags: what the user reads and may reword) and its
    evidence items' unit mean (what the user actually used; training's pseudo-facets
    retrieve with that alone). A facet without item evidence asks with its text."""
    text = normalized(np.stack([f.vector for f in facets]))
    rows = [t if c is None or len(c) != len(t) else t + c
            for t, c in zip(text, centroids, strict=True)]
    return normalized(np.stack(rows))


@dataclass
class HybridScoring:
    """How a hybrid list was scored, for the trace."""

    scoring: Scoring
    ranker: str | None
    feature_names: tuple[str, ...]
    blend_weights: dict[str, float] | None


def rank_hybrid(
    session: Session, user: User, vectors: VectorStore, models: TenantModels,
    likes: Sequence[ActiveFacet], avoids: Sequence[ActiveFacet], history: UserHistory,
    model_candidates: Callable[[], dict[CandidateSource, dict[str, SourceHit]]],
    at: datetime, request: RecommendationRequest, params: RankingParams, rating_max: float,
) -> tuple[Ranked, HybridScoring]:
    """Facet retrieval and the trained sources, ranked together (see the module notes).
    `model_candidates` gives the trained sources' hits; it is called once facet retrieval
    is done, so the models may work on them meanwhile (`service.recommend`)."""
    consumed = history.consumed
    excluded = {"consumed": 0, "not_in_catalog": 0, "category": 0, "dropped_avoid": 0}
    quotas: list[int] = []
    facet_found: list[str] = []
    rows: dict[str, CatalogRow] = {}

    # The facets' evidence (for retrieval, the features' centroids and facet reasons).
    facets = [*likes, *avoids]
    evidence, evidence_rows = evidence_with_items(
        session, user, {e for f in facets for e in f.evidence})
    evidence_vectors = item_vectors(vectors, user.tenant_id,
                                    {i: r.version for i, r in evidence_rows.items()})

    def evidence_of(f: ActiveFacet) -> list[npt.NDArray[np.float32]]:
        return [evidence_vectors[ev.item_id] for e in f.evidence
                if (ev := evidence.get(e)) is not None and ev.item_id in evidence_vectors]
    like_centroids = [_centroid(evidence_of(f)) for f in likes]

    if likes:
        quotas = facet_quotas([f.strength for f in likes], params.pool(request.k),
                              params.facet_floor)
        got = retrieve(session, vectors, user.tenant_id,
                       retrieval_vectors(likes, like_centroids), quotas, consumed,
                       request.category, params.facet_floor)
        facet_found, rows = got.candidates, got.rows
        excluded["consumed"] += got.consumed_seen
        excluded["category"] += got.off_category
    model_hits = model_candidates()
    union = list(dict.fromkeys([*facet_found, *(i for hits in model_hits.values()
                                                for i in hits)]))
    rows.update(catalog_rows(session, user.tenant_id, [c for c in union if c not in rows]))
    kept = []
    for item_id in union:
        row = rows.get(item_id)
        if item_id in consumed:
            excluded["consumed"] += 1
        elif row is None:
            excluded["not_in_catalog"] += 1
        elif request.category is not None and row.category != request.category:
            excluded["category"] += 1
        else:
            kept.append(item_id)
    kept.sort()  # ties broken by id: the same inputs always give the same list
    found = item_vectors(vectors, user.tenant_id, {i: rows[i].version for i in kept})
    dim = len(likes[0].vector) if likes else len(avoids[0].vector) if avoids else (
        len(next(iter(found.values()))) if found else 0)
    zero = np.zeros(dim, dtype=np.float32)
    items: Matrix = (np.stack([found.get(i, zero) for i in kept]) if kept and dim
                     else np.zeros((len(kept), dim), dtype=np.float32))

    # The features see the profile as training saw pseudo-facets: like strengths as
    # shares, one avoid signal (`profile_signals`); a facet without item evidence stands
    # in with its text vector.
    signals = profile_signals(
        [(f.strength, f.horizon == "long", _signal(f, centroid).centroid)
         for f, centroid in zip(likes, like_centroids, strict=True)],
        _centroid([v for f in avoids for v in evidence_of(f)]), history.events)

    like_sims = _similarity_matrix(likes, items)
    avoid_sims = _similarity_matrix(avoids, items)
    fusion = fuse([f.strength for f in likes], like_sims, [f.strength for f in avoids],
                  avoid_sims, params)
    index = {item_id: j for j, item_id in enumerate(kept)}
    # The facet source's score is the one training gave it: best share x cosine to a
    # like-facet's centroid, over what facet retrieval found.
    facet_best = (facet_scores(signals, items)[0] if dim
                  else np.zeros(len(kept), dtype=np.float64))
    facet_hits: dict[str, SourceHit] = {}
    facet_scored = sorted((i for i in facet_found if i in index),
                          key=lambda i: (-float(facet_best[index[i]]), i))
    for rank, item_id in enumerate(facet_scored):
        facet_hits[item_id] = SourceHit(score=float(facet_best[index[item_id]]), rank=rank)
    hits: dict[CandidateSource, dict[str, SourceHit]] = {
        "facet": facet_hits, **{s: h for s, h in model_hits.items() if s != "facet"}}

    now = at.timestamp()
    features = build_features(kept, hits, history.events, items if dim else None, signals,
                              models.popularity(kept, now), now)
    learned = models.rank_scores(features)
    if learned is not None:
        raw = np.asarray(learned, dtype=np.float64)
        scoring = HybridScoring("ranker", _ranker_version(models), FEATURE_NAMES, None)
    else:
        raw = blend(features)
        scoring = HybridScoring("blend", None, FEATURE_NAMES, dict(BLEND_WEIGHTS))
    dropped = fusion.dropped.tolist()
    raw_score = raw.tolist()
    # Best score first, ties by id (`kept` is sorted, so by position): one numpy sort.
    by_score = np.lexsort((np.arange(len(kept)), -raw)).tolist()
    eligible = [j for j in by_score if not dropped[j]]
    # The profile's mix of tags, which the list is calibrated to (`calibrated_mmr`),
    # from the best candidates only.
    profile = profile_tags(likes, evidence, evidence_rows)
    target = profile.target
    if target and params.calibration > 0:
        eligible = eligible[:params.calibration_pool_per_k * request.k]
    relevance = raw[eligible]
    if len(relevance):
        relevance = relevance - relevance.min() + 1e-6  # MMR wants relevance above 0
    chosen = [(eligible[i], objective) for i, objective in calibrated_mmr(
        relevance, items[eligible], [rows[kept[j]].tags for j in eligible], target,
        request.k, params.mmr_lambda, params.calibration)]

    # Reasons: titles of the history items a reason may cite, and each source's best.
    best_score = {s: max((h.score for h in found_hits.values()), default=0.0)
                  for s, found_hits in hits.items()}
    inputs = ReasonInputs(history, best_score, float(fusion.base.max(initial=0.0)))
    backing = {n: FacetEvidence.of(f, evidence, evidence_vectors) for n, f in enumerate(likes)}
    best_of = fusion.best.tolist()
    # The history items event reasons may cite for the chosen items, read once: their
    # titles for the explanations, their vectors for how related each is to the item.
    positions = set(recent_positives(history, SEQUENCE_EVIDENCE))
    for j, _ in chosen:
        positions.update(via for h in hits.values() if kept[j] in h
                         for via in h[kept[j]].vias)
    cited_items = {history.cited[n].item_id for n in positions if 0 <= n < len(history.cited)}
    cited_rows = catalog_rows(session, user.tenant_id, cited_items)
    cited_vectors = {**evidence_vectors, **item_vectors(
        vectors, user.tenant_id, {i: r.version for i, r in cited_rows.items()
                                  if i not in evidence_vectors})}
    picks: list[Pick] = []
    chosen_reasons: list[Reason | None] = []
    reasons: dict[int, ReasonKind] = {}
    for j, _ in chosen:
        item_id = kept[j]
        facet_n = _reason_facet(rows[item_id].tags, likes, best_of[j], profile)
        facet = likes[facet_n] if facet_n >= 0 else None
        item_vector = items[j]

        def related(cited: str | None, item_vector: Matrix = item_vector) -> float | None:
            found = cited_vectors.get(cited or "")
            return None if found is None else float(found @ item_vector)

        reason = strongest_reason(
            {s: h[item_id] for s, h in hits.items() if item_id in h}, inputs, facet,
            float(facet.strength * like_sims[facet_n, j]) if facet is not None else 0.0,
            float(like_sims[facet_n, j]) if facet is not None else 0.0,
            backing[facet_n].closest_to(items[j]) if facet is not None else [],
            related if dim else None)
        chosen_reasons.append(reason)
        if reason is not None:
            reasons[j] = reason.kind
    for (j, _), reason in zip(chosen, chosen_reasons, strict=True):
        if reason is not None and reason.kind != "facet":
            reason.evidence = [replace(e, title=cited_rows[e.item_id].title)
                               if e.item_id in cited_rows else e for e in reason.evidence]
        picks.append(_hybrid_pick(kept[j], rows[kept[j]].title, raw_score[j], reason,
                                  rating_max))

    rank_of = {j: (rank, objective) for rank, (j, objective) in enumerate(chosen)}
    sims = _rounded_columns(np.vstack([like_sims, avoid_sims]))
    via_ids = [e.event_id for e in history.cited]
    feature_rows = np.round(features.astype(np.float64), 5).tolist()
    order = [j for j in by_score if j in rank_of] + [j for j in by_score if j not in rank_of]
    excluded["dropped_avoid"] = sum(dropped)
    excluded["not_traced"] = max(0, len(order) - TRACE_CANDIDATES)
    candidates = []
    for j in order[:TRACE_CANDIDATES]:
        status: Status = ("returned" if j in rank_of else "dropped_avoid" if dropped[j]
                          else "not_selected")
        item_id = kept[j]
        candidates.append(StoredCandidate(
            item_id=item_id, title=rows[item_id].title, sims=sims[j],
            base_score=_r(fusion.base[j]), avoid_penalty=_r(fusion.penalty[j]),
            score=_r(raw_score[j]),
            best_facet=likes[best_of[j]].facet_id if best_of[j] >= 0 else None,
            status=status, mmr_rank=rank_of[j][0] if j in rank_of else None,
            mmr_objective=_r(rank_of[j][1]) if j in rank_of else None,
            sources={s: TraceSourceHit(
                score=_r(h[item_id].score), rank=h[item_id].rank,
                via=via_ids[v] if (v := h[item_id].via) is not None
                and 0 <= v < len(via_ids) else None)
                for s in ALL_SOURCES if (h := hits.get(s)) and item_id in h},
            features=feature_rows[j], reason=reasons.get(j)))
    source: Source = "hybrid"
    calibrated = ({t: round(v, 4) for t, v in target.items()}
                  if target and params.calibration > 0 else None)
    return (Ranked(source, picks, candidates, excluded,
                   {f.facet_id: q for f, q in zip(likes, quotas, strict=True)}, calibrated),
            scoring)


def _ranker_version(models: TenantModels) -> str:
    ranker = getattr(models, "ranker", None)
    version = getattr(ranker, "version", None)
    return str(version) if version else f"{models.meta.version}/ranker"


def _hybrid_pick(item_id: str, title: str, score: float, reason: Reason | None,
                 rating_max: float) -> Pick:
    if reason is None:
        return Pick(item_id=item_id, title=title, score=_r(score), because=None,
                    explanation="Popular with other users; nothing you did points to it.")
    evidence = [EvidenceOut(**vars(e)) for e in reason.evidence]
    if reason.kind == "facet" and reason.facet is not None:
        facet = reason.facet
        return Pick(
            item_id=item_id, title=title, score=_r(score),
            because=Because(kind="facet", facet_id=facet.facet_id, label=facet.label,
                            strength=_r(facet.strength), similarity=_r(reason.similarity or 0),
                            evidence=evidence),
            explanation=template_explanation(facet.label, reason.evidence),
            given=reason.evidence, facet_description=facet.description)
    return Pick(item_id=item_id, title=title, score=_r(score),
                because=Because(kind=reason.kind, evidence=evidence),
                explanation=event_explanation(reason.kind, reason.evidence, reason.values,
                                              rating_max),
                given=reason.evidence)
