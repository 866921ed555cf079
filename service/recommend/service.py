"""Recommendations from a stored profile (DESIGN.md §2), and the trace that explains them.

The default path never calls the LLM: it reads the user's active facets with
strengths decayed to now, asks the tenant's item collection for each like-facet's
neighbours in one batched query, scores, diversifies, explains from a template and
stores the trace. With `explain=llm` the first `LLM_EXPLAIN_TOP` items (3) get a
model-written sentence, checked against the evidence it was given; the rest keep
the template. That bounds the added latency to three calls, and fewer when the
server fails or a 30 s budget runs out.

A user without like-facets gets the tenant's recently popular items, then its
popular items of all time, then the rest of the catalog, until the list holds k:
`source: "popular"` with no `because`, each explanation naming its tier, never
dressed up as personal.

Recommend reads profiles; it never writes them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.core.errors import not_found
from service.core.hashing import chunks
from service.ingest.models import Event
from service.llm.prompts import load_prompt
from service.profiles.merge import DecayRules, decayed_strength
from service.profiles.models import ProfileFacetRow
from service.profiles.schemas import EvidenceOut
from service.profiles.service import (
    EvidenceEvent,
    ProfileRuntime,
    evidence_and_item_versions,
    to_facet,
    vector_store_unavailable,
)
from service.recommend.explain import (
    ask_for_explanation,
    popular_explanation,
    prompt_messages,
    template_explanation,
)
from service.recommend.models import RecommendationTrace
from service.recommend.ranking import Matrix, RankingParams, facet_quotas, fuse, mmr, normalized
from service.recommend.schemas import (
    Because,
    ExplanationSource,
    FeedbackEvent,
    PopularTier,
    RecommendationsOut,
    RecommendedItem,
    Source,
    TraceOut,
)
from service.users.models import User
from service.vectors.store import VectorStore

LLM_EXPLAIN_TOP = 3  # items explained by the model when asked; the rest use the template
# After the first, no explanation call starts once this much time has gone; a call in
# flight is bounded by the LLM runtime's own timeout.
LLM_EXPLAIN_BUDGET_SECONDS = 30
POPULAR_WINDOW_DAYS = 30
# Where a popular list's items come from, tried in this order until it holds k.
POPULAR_TIERS: tuple[PopularTier, ...] = ("recent", "all_time", "catalog")
EVIDENCE_SHOWN = 5  # evidence events per `because`, closest to the item first
MAX_ASK = 1000  # neighbours per facet, at most, in one query
CATEGORY_OVERFETCH = 4  # with a category filter, unfiltered neighbours asked per wanted one
EXPLAIN_PROMPT = "explain_recommendation"

Explain = Literal["template", "llm"]


@dataclass(frozen=True)
class RecommendationRequest:
    k: int = 10
    explain: Explain = "template"
    category: str | None = None


@dataclass(frozen=True)
class ActiveFacet:
    facet_id: str
    label: str
    description: str
    polarity: Literal["like", "avoid"]
    horizon: Literal["short", "long"]
    pinned: bool
    strength: float  # decayed to the request's time
    stored_strength: float
    strength_at: datetime
    evidence: tuple[str, ...]
    vector: npt.NDArray[np.float32]


def active_facets(session: Session, user: User, at: datetime,
                  rules: DecayRules) -> list[ActiveFacet]:
    """Facets that may shape a list now, strongest first.

    Archived and suppressed facets never do; neither does one that has decayed
    below the archive floor since the last refresh (the next refresh archives it).
    """
    rows = session.scalars(
        select(ProfileFacetRow)
        .where(ProfileFacetRow.user_pk == user.id, ProfileFacetRow.archived.is_(False),
               ProfileFacetRow.suppressed.is_(False))
        .order_by(ProfileFacetRow.id))
    facets = []
    for row in rows:
        f = to_facet(row, with_embedding=False)
        strength = decayed_strength(f, at, rules)
        if strength < rules.archive_below and not f.pinned:
            continue
        facets.append(ActiveFacet(
            facet_id=f.facet_id, label=f.label, description=f.description,
            polarity=f.polarity, horizon=f.horizon, pinned=f.pinned, strength=strength,
            stored_strength=f.strength, strength_at=f.strength_at, evidence=f.evidence,
            # The stored float32 bytes as they are: no detour through Python floats.
            vector=np.frombuffer(row.embedding, dtype="<f4")))
    return sorted(facets, key=lambda f: (-f.strength, f.facet_id))


# Built once: the expanding IN parameters skip per-value coercion on the hot path. Run
# on the session's connection: plain column reads need nothing from the ORM layer.
# No DISTINCT: SQLite would sort every row into a temporary B-tree; a set dedups faster.
_CONSUMED_QUERY = (
    select(Event.item_id).where(Event.user_pk == bindparam("user"), Event.item_id.is_not(None))
)
_CATALOG_QUERY = (
    select(Item.item_id, Item.title, Item.indexed_hash, Item.category)
    .where(Item.tenant_id == bindparam("tenant"),
           Item.item_id.in_(bindparam("ids", expanding=True)))
)


def consumed_items(session: Session, user: User) -> set[str]:
    """Every item the user has any event on: never recommended back to them."""
    found = session.connection().execute(_CONSUMED_QUERY, {"user": user.id}).scalars().all()
    return {item_id for item_id in found if item_id is not None}


@dataclass(frozen=True)
class CatalogRow:
    title: str
    version: str  # the indexed text hash: what the stored vector was made from
    category: str | None


def catalog_rows(session: Session, tenant_id: int, ids: Iterable[str]) -> dict[str, CatalogRow]:
    found: dict[str, CatalogRow] = {}
    for part in chunks(sorted(set(ids))):
        for item_id, title, version, category in session.connection().execute(
                _CATALOG_QUERY, {"tenant": tenant_id, "ids": part}):
            found[item_id] = CatalogRow(title, version or "", category)
    return found


@dataclass
class Retrieved:
    candidates: list[str]  # unique, none consumed, in the order facets found them
    rows: dict[str, CatalogRow]  # catalog rows already read (all of them with a category)
    consumed_seen: int
    off_category: int
    asked: int  # neighbours per facet in the first query
    widened: bool


def _nearest(vectors: VectorStore, tenant_id: int, matrix: Matrix, n: int,
             where: dict[str, str] | None) -> list[list[tuple[str, float]]]:
    try:
        return vectors.nearest(tenant_id, "items", matrix, n, where)
    except Exception as exc:  # any client error
        raise vector_store_unavailable(exc) from exc


def retrieve(session: Session, vectors: VectorStore, tenant_id: int, matrix: Matrix,
             quotas: Sequence[int], consumed: set[str], category: str | None,
             floor: int) -> Retrieved:
    """Each facet's `quota` nearest unconsumed items, in one batched query.

    Each facet asks for twice its quota; a facet whose neighbours were mostly
    consumed asks once more, wider, so heavy users are not left short.

    With a category, filtered search would be the obvious tool, but on Chroma's
    local backend it costs ~45 ms per query at 50k items, against ~1 ms per facet
    unfiltered. So facets over-fetch unfiltered and keep the items the catalog
    files under the category; a facet left with fewer than `floor` asks again for
    its 1,000 nearest, and only one still short (a rare category) asks Chroma with
    the filter.
    """
    ask = min(2 * max(quotas), MAX_ASK)
    wider = min(ask + len(consumed), MAX_ASK)
    rows: dict[str, CatalogRow] = {}
    off_category: set[str] = set()
    hits: list[list[tuple[str, float]]] = [[] for _ in quotas]

    def take(i: int) -> list[str]:
        return [item for item, _ in hits[i] if item not in consumed][:quotas[i]]

    queries = 0
    attempts: list[tuple[int, dict[str, str] | None]] = []
    if category is None:
        hits = _nearest(vectors, tenant_id, matrix, ask, None)
        queries = 1
        short = [i for i, row in enumerate(hits) if len(take(i)) < quotas[i] and len(row) >= ask]
        if wider > ask:
            attempts.append((wider, None))
    else:
        short = list(range(len(quotas)))
        over = min(ask * CATEGORY_OVERFETCH, MAX_ASK)
        attempts.append((over, None))
        if over < MAX_ASK:
            attempts.append((MAX_ASK, None))
        attempts.append((wider, {"category": category}))
    for n, where in attempts:
        if not short:
            break
        found = _nearest(vectors, tenant_id, matrix[short], n, where)
        queries += 1
        if category is not None and where is None:
            rows.update(catalog_rows(session, tenant_id,
                                     {i for row in found for i, _ in row if i not in rows}))
            off_category.update(i for row in found for i, _ in row
                                if i not in rows or rows[i].category != category)
            found = [[(i, sim) for i, sim in row if i not in off_category] for row in found]
        for i, row in zip(short, found, strict=True):
            hits[i] = row
        if category is not None:
            short = [i for i in short if len(take(i)) < min(quotas[i], floor)]
    seen_consumed = {item for row in hits for item, _ in row if item in consumed}
    return Retrieved(candidates=list(dict.fromkeys(i for n in range(len(quotas))
                                                   for i in take(n))),
                     rows=rows, consumed_seen=len(seen_consumed),
                     off_category=len(off_category), asked=ask, widened=queries > 1)


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
    candidates: list[dict[str, Any]]
    excluded: dict[str, int]
    quotas: dict[str, int] = field(default_factory=dict)


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
    found = _vectors(vectors, user.tenant_id, {i: rows[i].version for i in kept})
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
    evidence, evidence_versions = evidence_and_item_versions(
        session, user, {e for n in cited for e in likes[n].evidence})
    evidence_vectors = _vectors(vectors, user.tenant_id, evidence_versions)
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
        status = ("returned" if j in rank_of else "dropped_avoid" if dropped[j]
                  else "dropped_score" if raw_score[j] <= 0 else "not_selected")
        candidates.append({
            "item_id": kept[j], "title": rows[kept[j]].title, "sims": sims[j],
            "base_score": base[j], "avoid_penalty": penalty[j], "score": score[j],
            "best_facet": likes[best_of[j]].facet_id, "status": status,
            "mmr_rank": rank_of[j][0] if j in rank_of else None,
            "mmr_objective": _r(rank_of[j][1]) if j in rank_of else None,
        })
    excluded["dropped_avoid"] = sum(dropped)
    excluded["dropped_score"] = sum(1 for c in candidates if c["status"] == "dropped_score")
    excluded["retrieval_widened"] = int(got.widened)
    return Ranked("profile", picks, candidates, excluded,
                  {f.facet_id: q for f, q in zip(likes, quotas, strict=True)})


def _vectors(vectors: VectorStore, tenant_id: int,
             versions: dict[str, str]) -> dict[str, npt.NDArray[np.float32]]:
    try:
        return vectors.vectors(tenant_id, "items", versions)
    except Exception as exc:  # any client error
        raise vector_store_unavailable(exc) from exc


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
        found = _vectors(vectors, tenant_id, {r[0]: r[2] for r in rows})
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
    candidates: list[dict[str, Any]] = []
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
                status = ("dropped_avoid" if dropped[j] else "not_selected" if full
                          else "returned")
                if status == "returned":
                    picks.append(Pick(
                        item_id=item_id, title=title, score=float(count), because=None,
                        explanation=popular_explanation(tier, count, POPULAR_WINDOW_DAYS),
                        popular_tier=tier))
                runners_up += status == "not_selected"
                candidates.append({
                    "item_id": item_id, "title": title, "sims": sims[j],
                    "base_score": float(count), "avoid_penalty": 0.0, "score": float(count),
                    "best_facet": None, "popular_events": count, "popular_tier": tier,
                    "status": status, "mmr_rank": None, "mmr_objective": None,
                })
            if len(page) < size:
                break
    excluded = {"consumed": consumed_seen,
                "dropped_avoid": sum(1 for c in candidates if c["status"] == "dropped_avoid")}
    return Ranked("popular", picks, candidates, excluded)


def explain_with_llm(session: Session, user: User, rt: ProfileRuntime,
                     picks: Sequence[Pick]) -> None:
    """Replace the first few template explanations with checked model-written ones."""
    top = [(p, p.because) for p in picks[:LLM_EXPLAIN_TOP] if p.because is not None]
    if not top:
        return
    prompt = load_prompt(rt.settings.prompts_dir, EXPLAIN_PROMPT)
    details = {i.item_id: i for i in session.scalars(select(Item).where(
        Item.tenant_id == user.tenant_id, Item.item_id.in_([p.item_id for p, _ in top])))}
    consumed_titles: set[str] = set()
    for part in chunks(sorted(consumed_items(session, user))):
        consumed_titles.update(session.scalars(select(Item.title).where(
            Item.tenant_id == user.tenant_id, Item.item_id.in_(part))))
    session.commit()  # hold no transaction open during the slow calls
    started = time.monotonic()
    stop: str | None = None
    for n, (pick, because) in enumerate(top):
        if stop is None and n and time.monotonic() - started > LLM_EXPLAIN_BUDGET_SECONDS:
            stop = f"the {LLM_EXPLAIN_BUDGET_SECONDS} s budget for explanations was spent"
        if stop is not None:
            pick.explanation_source, pick.explanation_problem = "template_fallback", stop
            continue
        item = details.get(pick.item_id)
        messages = prompt_messages(
            prompt, because.label, pick.facet_description, pick.given, pick.title,
            item.category if item else None, item.tags if item else [])
        given_titles = {e.title for e in pick.given if e.title} | {pick.title}
        answer = ask_for_explanation(rt.llm, messages, [e.event_id for e in pick.given],
                                     given_titles, consumed_titles - given_titles)
        pick.llm = {"prompt_name": prompt.name, "prompt_version": prompt.version,
                    "model": rt.llm.model_name, "latency_ms": answer.latency_ms,
                    "prompt_tokens": answer.prompt_tokens,
                    "output_tokens": answer.output_tokens, "cited": answer.cited}
        if answer.text is not None:
            pick.explanation, pick.explanation_source = answer.text, "llm"
        else:
            pick.explanation_source, pick.explanation_problem = "template_fallback", answer.problem
        if answer.unavailable:  # a dead or hung server: do not make the client wait again
            stop = f"not asked: the model failed on an earlier item ({answer.problem})"


_TRACE_INSERT = insert(RecommendationTrace)


def recommend(session: Session, user: User, rt: ProfileRuntime,
              request: RecommendationRequest,
              params: RankingParams | None = None) -> RecommendationsOut:
    """A list for this user now, its trace stored before it is returned."""
    params = params or RankingParams()
    at = rt.clock()
    rules = rt.rules
    facets = active_facets(session, user, at, rules)
    likes = [f for f in facets if f.polarity == "like"]
    avoids = [f for f in facets if f.polarity == "avoid"]
    consumed = consumed_items(session, user)
    if likes:
        ranked = rank_from_profile(session, user, rt.vectors, likes, avoids, consumed, request,
                                   params)
    else:
        ranked = rank_popular(session, user, rt.vectors, avoids, consumed, at, request, params)
    if request.explain == "llm":
        explain_with_llm(session, user, rt, ranked.picks)

    recommendation_id = "rec_" + uuid.uuid4().hex
    parameters = {
        "k": request.k, "explain": request.explain, "category": request.category,
        "pool": params.pool(request.k), "facet_floor": params.facet_floor, "fusion": "max",
        "mmr_lambda": params.mmr_lambda, "avoid_penalty_from": params.avoid_penalty_from,
        "avoid_drop_from": params.avoid_drop_from, "llm_explain_top": LLM_EXPLAIN_TOP,
        "half_life_short_days": rules.half_life_short.total_seconds() / 86400,
        "half_life_long_days": rules.half_life_long.total_seconds() / 86400,
        "popular_window_days": POPULAR_WINDOW_DAYS,
    }
    out = RecommendationsOut(
        recommendation_id=recommendation_id, user_id=user.user_id, source=ranked.source,
        generated_at=at, items=[
            RecommendedItem(item_id=p.item_id, title=p.title, score=p.score,
                            because=p.because, explanation=p.explanation,
                            explanation_source=p.explanation_source)
            for p in ranked.picks])
    # One INSERT with bound parameters (its compiled form is cached), no unit of work:
    # the trace is written once and never updated here.
    session.connection().execute(_TRACE_INSERT, {
        "tenant_id": user.tenant_id, "user_pk": user.id,
        "recommendation_id": recommendation_id, "created_at": at, "source": ranked.source,
        "parameters": parameters,
        # Like-facets then avoid-facets: the order of every candidate's `sims`.
        "facets": [{
            "facet_id": f.facet_id, "label": f.label, "description": f.description,
            "polarity": f.polarity, "horizon": f.horizon, "pinned": f.pinned,
            "strength": _r(f.strength), "stored_strength": _r(f.stored_strength),
            "strength_at": f.strength_at.isoformat(), "evidence": list(f.evidence),
            "quota": ranked.quotas.get(f.facet_id),
        } for f in [*likes, *avoids]],
        "candidates": ranked.candidates,
        "items": [{
            **item, "rank": rank, "explanation_problem": p.explanation_problem, "llm": p.llm,
            "popular_tier": p.popular_tier,
        } for rank, (item, p) in enumerate(zip(out.model_dump(mode="json")["items"],
                                                ranked.picks, strict=True))],
        "excluded": ranked.excluded,
    })
    session.commit()
    return out


def get_trace(session: Session, tenant_id: int, recommendation_id: str) -> TraceOut:
    """The stored trace, plus what the user did since with the items it returned."""
    found = session.execute(
        select(RecommendationTrace, User.user_id)
        .join(User, User.id == RecommendationTrace.user_pk)
        .where(RecommendationTrace.tenant_id == tenant_id,
               RecommendationTrace.recommendation_id == recommendation_id)).one_or_none()
    if found is None:
        raise not_found("recommendation_not_found",
                        f"No recommendation {recommendation_id!r} in this tenant.")
    trace, user_id = found
    # The trace's user (found within the tenant) scopes the events. A `tenant_id` term
    # as well would only invite SQLite to walk the whole tenant's events by
    # ix_events_tenant_ts, for the order it gives, instead of this user's.
    feedback = [
        FeedbackEvent(event_id=event_id, type=type_, ts=ts, item_id=item_id, value=value)
        for event_id, type_, ts, item_id, value in session.execute(
            select(Event.event_id, Event.type, Event.ts, Event.item_id, Event.value)
            .where(Event.user_pk == trace.user_pk,
                   Event.recommendation_id == recommendation_id)
            .order_by(Event.ts, Event.id))
    ]
    returned = {i["item_id"] for i in trace.items}
    facet_ids = [f["facet_id"] for f in trace.facets]
    return TraceOut.model_validate({
        "recommendation_id": trace.recommendation_id, "user_id": user_id,
        "source": trace.source, "created_at": trace.created_at,
        "parameters": trace.parameters, "facets": trace.facets,
        "candidates": [{**c, "similarities": dict(zip(facet_ids, c["sims"], strict=True))}
                       for c in trace.candidates],
        "excluded": trace.excluded,
        "items": [{**i, "feedback": [f for f in feedback if f.item_id == i["item_id"]]}
                  for i in trace.items],
        "other_feedback": [f for f in feedback if f.item_id not in returned],
    })


def forget_recommendations(session: Session, user: User) -> None:
    """Remove the user's traces (the caller commits): they quote the user's activity."""
    session.execute(delete(RecommendationTrace).where(RecommendationTrace.user_pk == user.id))
