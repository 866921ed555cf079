"""Recommendations (DESIGN.md §2): this module only orchestrates the steps, in order.

1. `candidates.py`: the user's facets, history and consumed items; facet retrieval from
   Chroma and, when the tenant has a trained artifact, every trained source.
2. `training/features.py` + `ranking.py`: one feature row per candidate, scored by the
   tenant's learned ranker, or the documented fixed blend without one.
3. `lists.py` (`hybrid.py`, `profile_list.py`, `popular.py`): avoid-facets drop, MMR
   diversifies; the facets-only and popular lists for tenants without models and users
   without anything personal.
4. `reasons.py` + `explain.py`: each item's reason grounded in the user's own events
   (the one whose first citation reads closest to the item), in a template sentence
   (the LLM only with `explain=llm`, first 3 items, checked, falling back to the
   template; bounded by a 30 s budget).
5. `trace.py`: the typed trace, stored before the list is returned.

A tenant without a trained artifact gets facets plus popular (`source: "profile"` or
`"popular"`), and the trace says so (`parameters.models: null` and a note).

Recommend reads profiles; it never writes them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.ingest.evidence import user_item_titles
from service.llm.prompts import load_prompt
from service.profiles.runtime import ProfileRuntime
from service.recommend.candidates import (
    CANDIDATES_PER_SOURCE,
    UserHistory,
    active_facets,
    consumed_items,
    kept_model_candidates,
    model_candidates,
    tenant_models,
    user_history,
)
from service.recommend.explain import REASON_TEXT, ask_for_explanation, prompt_messages
from service.recommend.hybrid import HybridScoring, rank_hybrid
from service.recommend.lists import Explain, Pick, Ranked, RecommendationRequest
from service.recommend.popular import POPULAR_WINDOW_DAYS, rank_popular
from service.recommend.profile_list import rank_from_profile
from service.recommend.ranking import RankingParams
from service.recommend.schemas import (
    ExplanationCall,
    RecommendationsOut,
    RecommendedItem,
    TraceModels,
    TraceParameters,
)
from service.recommend.trace import (
    StoredFacet,
    StoredItem,
    get_trace,
    r6,
    write_trace,
)
from service.training.contract import CandidateSource, SourceHit, TenantModels
from service.training.features import FEATURE_VERSION
from service.users.models import User

__all__ = ["Explain", "RecommendationRequest", "get_trace",
           "recommend"]

LLM_EXPLAIN_TOP = 3  # items explained by the model when asked; the rest use the template
# The trained sources (the sequence model's forward pass above all) run here while the
# request's own thread reads the facets' evidence and queries Chroma: torch and SQLite
# release the GIL, so much of the two overlaps on a second core (Chroma's queries did not
# run faster from two threads, so they may not). They touch no session; each request
# waits for its own result.
_MODEL_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="model-candidates")
# After the first, no explanation call starts once this much time has gone; a call in
# flight is bounded by the LLM runtime's own timeout.
LLM_EXPLAIN_BUDGET_SECONDS = 30
EXPLAIN_PROMPT = "explain_recommendation"
NO_MODELS = "no trained models for this tenant: facets plus popular"


def explain_with_llm(session: Session, user: User, rt: ProfileRuntime,
                     picks: Sequence[Pick]) -> None:
    """Replace the first few template explanations with checked model-written ones."""
    top = [(p, p.because) for p in picks[:LLM_EXPLAIN_TOP] if p.because is not None]
    if not top:
        return
    prompt = load_prompt(rt.settings.prompts_dir, EXPLAIN_PROMPT)
    details = {i.item_id: i for i in session.scalars(select(Item).where(
        Item.tenant_id == user.tenant_id, Item.item_id.in_([p.item_id for p, _ in top])))}
    consumed_titles = set(user_item_titles(session, user))
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
        label, description = ((because.label or "", pick.facet_description)
                              if because.kind == "facet" else REASON_TEXT[because.kind])
        messages = prompt_messages(
            prompt, label, description, pick.given, pick.title,
            item.category if item else None, item.tags if item else [])
        given_titles = {e.title for e in pick.given if e.title} | {pick.title}
        answer = ask_for_explanation(rt.llm, messages, [e.event_id for e in pick.given],
                                     given_titles, consumed_titles - given_titles)
        pick.llm = ExplanationCall(
            prompt_name=prompt.name, prompt_version=prompt.version, model=rt.llm.model_name,
            latency_ms=answer.latency_ms, prompt_tokens=answer.prompt_tokens,
            output_tokens=answer.output_tokens, cited=answer.cited)
        if answer.text is not None:
            pick.explanation, pick.explanation_source = answer.text, "llm"
        else:
            pick.explanation_source, pick.explanation_problem = "template_fallback", answer.problem
        if answer.unavailable:  # a dead or hung server: do not make the client wait again
            stop = f"not asked: the model failed on an earlier item ({answer.problem})"



def _model_hits(models: TenantModels, history: UserHistory, category: str | None,
                at: datetime) -> Callable[[], dict[CandidateSource, dict[str, SourceHit]]]:
    """The trained sources' hits, as a call that waits for them: worked out on
    `_MODEL_POOL` while the request reads the facets' evidence, except when the models
    keep their personal answer for this history (`TrainedModels.candidates_if_kept`):
    then only popular was left to do, which took less time than handing it to a thread
    and waiting. The hits are the same."""
    found = kept_model_candidates(models, history, category, at)
    if found is not None:
        return lambda: found
    return _MODEL_POOL.submit(model_candidates, models, history, category, at).result


def _models_info(models: TenantModels, scoring: HybridScoring | None) -> TraceModels:
    meta = models.meta
    return TraceModels(version=meta.version, trained_at=meta.trained_at,
                       sources=list(meta.sources), ranker=scoring.ranker if scoring else None,
                       feature_version=FEATURE_VERSION, heldout=dict(meta.heldout))


def recommend(session: Session, user: User, rt: ProfileRuntime,
              request: RecommendationRequest,
              params: RankingParams | None = None) -> RecommendationsOut:
    """A list for this user now, its trace stored before it is returned."""
    params = params or RankingParams(calibration=rt.settings.recommend_calibration,
                                     unexplained_keep=rt.settings.recommend_unexplained_keep,
                                     mmr_lambda=rt.settings.recommend_mmr_lambda)
    at = rt.clock()
    rules = rt.rules
    facets = active_facets(session, user, at, rules)
    likes = [f for f in facets if f.polarity == "like"]
    avoids = [f for f in facets if f.polarity == "avoid"]
    models = tenant_models(rt, user.tenant_id)
    notes: list[str] = []
    scoring: HybridScoring | None = None
    ranked: Ranked | None = None
    if models is not None:
        history = user_history(session, user, rt.settings.rating_max)
        hits = _model_hits(models, history, request.category, at)
        if likes or any(h for s, h in hits().items() if s != "popular"):
            ranked, scoring = rank_hybrid(session, user, rt.vectors, models, likes, avoids,
                                          history, hits, at, request, params,
                                          rt.settings.rating_max)
        else:
            notes.append("nothing personal to go on yet (no like-facets, no model "
                         "candidates from the user's events): popular items")
        consumed = history.consumed
    else:
        notes.append(NO_MODELS)
        consumed = consumed_items(session, user)
    if ranked is None:
        ranked = (rank_from_profile(session, user, rt.vectors, likes, avoids, consumed,
                                    request, params) if likes
                  else rank_popular(session, user, rt.vectors, avoids, consumed, at, request,
                                    params))
    if request.explain == "llm":
        explain_with_llm(session, user, rt, ranked.picks)

    recommendation_id = "rec_" + uuid.uuid4().hex
    parameters = TraceParameters(
        k=request.k, explain=request.explain, category=request.category,
        pool=params.pool(request.k), facet_floor=params.facet_floor, fusion="max",
        mmr_lambda=params.mmr_lambda, avoid_penalty_from=params.avoid_penalty_from,
        avoid_drop_from=params.avoid_drop_from, llm_explain_top=LLM_EXPLAIN_TOP,
        half_life_short_days=rules.half_life_short.total_seconds() / 86400,
        half_life_long_days=rules.half_life_long.total_seconds() / 86400,
        popular_window_days=POPULAR_WINDOW_DAYS,
        scoring=(scoring.scoring if scoring else
                 "facets" if ranked.source == "profile" else "popular"),
        models=_models_info(models, scoring) if models is not None else None,
        candidates_per_source=CANDIDATES_PER_SOURCE if scoring else None, notes=notes,
        feature_names=list(scoring.feature_names) if scoring else None,
        blend_weights=scoring.blend_weights if scoring else None,
        calibration=params.calibration if ranked.calibration_target else 0.0,
        calibration_target=ranked.calibration_target,
        unexplained_keep=params.unexplained_keep if scoring else None)
    out = RecommendationsOut(
        recommendation_id=recommendation_id, user_id=user.user_id, source=ranked.source,
        generated_at=at, items=[
            RecommendedItem(item_id=p.item_id, title=p.title, score=p.score,
                            because=p.because, explanation=p.explanation,
                            explanation_source=p.explanation_source)
            for p in ranked.picks])
    write_trace(
        session, user, recommendation_id, at, ranked.source, parameters,
        # Like-facets then avoid-facets: the order of every candidate's `sims`.
        [StoredFacet(
            facet_id=f.facet_id, label=f.label, description=f.description,
            polarity=f.polarity, horizon=f.horizon, pinned=f.pinned,
            strength=r6(f.strength), stored_strength=r6(f.stored_strength),
            strength_at=f.strength_at.isoformat(), evidence=list(f.evidence),
            quota=ranked.quotas.get(f.facet_id)) for f in [*likes, *avoids]],
        ranked.candidates,
        [StoredItem(**item.model_dump(), rank=rank, explanation_problem=p.explanation_problem,
                    llm=p.llm, popular_tier=p.popular_tier)
         for rank, (item, p) in enumerate(zip(out.items, ranked.picks, strict=True))],
        ranked.excluded)
    session.commit()
    return out
