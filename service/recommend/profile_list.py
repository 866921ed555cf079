"""The list of a user with facets in a tenant without trained models: facet retrieval
only, scored by the best like-facet's strength x similarity, as before models existed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from service.ingest.evidence import evidence_and_items
from service.profiles.schemas import EvidenceOut
from service.recommend.candidates import ActiveFacet, catalog_rows, item_vectors, retrieve
from service.recommend.explain import template_explanation
from service.recommend.lists import (
    FacetEvidence,
    Pick,
    Ranked,
    RecommendationRequest,
    rounded_columns,
    similarity_matrix,
)
from service.recommend.ranking import RankingParams, fuse, mmr, normalized
from service.recommend.schemas import Because, CandidateStatus
from service.recommend.trace import CandidateRow, r6
from service.training.pseudo_facets import facet_quotas
from service.users.models import User
from service.vectors.store import VectorStore


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
    like_sims, avoid_sims = similarity_matrix(likes, items), similarity_matrix(avoids, items)
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
            item_id=kept[j], title=rows[kept[j]].title, score=r6(raw_score[j]),
            because=Because(
                facet_id=facet.facet_id, label=facet.label, strength=r6(facet.strength),
                similarity=r6(like_sims[best, j]),
                evidence=[EvidenceOut(**vars(e)) for e in shown]),
            explanation=template_explanation(facet.label, shown), given=shown,
            facet_description=facet.description))

    rank_of = {j: (rank, objective) for rank, (j, objective) in enumerate(chosen)}
    sims = rounded_columns(np.vstack([like_sims, avoid_sims]))
    base, penalty, score = (np.round(a, 6).tolist()
                            for a in (fusion.base, fusion.penalty, fusion.score))
    candidates: list[CandidateRow] = []
    for j in sorted(range(len(kept)), key=lambda j: (-raw_score[j], kept[j])):
        status: CandidateStatus = ("returned" if j in rank_of else "dropped_avoid" if dropped[j]
                          else "dropped_score" if raw_score[j] <= 0 else "not_selected")
        stored: CandidateRow = {
            "item_id": kept[j], "title": rows[kept[j]].title, "sims": sims[j],
            "base_score": base[j], "avoid_penalty": penalty[j], "score": score[j],
            "best_facet": likes[best_of[j]].facet_id, "status": status}
        if j in rank_of:
            stored["mmr_rank"], stored["mmr_objective"] = rank_of[j][0], r6(rank_of[j][1])
        candidates.append(stored)
    excluded["dropped_avoid"] = sum(dropped)
    excluded["dropped_score"] = sum(1 for c in candidates if c["status"] == "dropped_score")
    excluded["retrieval_widened"] = int(got.widened)
    return Ranked("profile", picks, candidates, excluded,
                  {f.facet_id: q for f, q in zip(likes, quotas, strict=True)})
