from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from service.core.errors import ERROR_RESPONSES, ErrorResponse
from service.core.schemas import EXTERNAL_ID_PATTERN, UserIdPath
from service.deps import ProfilesDep, SessionDep, TenantDep
from service.recommend import service
from service.recommend.schemas import RecommendationsOut, TraceOut
from service.users.service import get_user

router = APIRouter(prefix="/v1", tags=["recommendations"], responses=ERROR_RESPONSES)

RecommendationIdPath = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN,
                                           description="as returned with a list")]

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "the vector store is unreachable"},
}


@router.get("/users/{user_id}/recommendations", response_model=RecommendationsOut,
            responses=UNAVAILABLE)
def recommendations(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep, rt: ProfilesDep,
    k: Annotated[int, Query(ge=1, le=100, description="items to return")] = 10,
    explain: Annotated[service.Explain, Query(
        description="template (fast, no model) or llm (the first 3 items; checked, "
                    "falls back to the template)")] = "template",
    category: Annotated[str | None, Query(min_length=1, max_length=200,
                                          description="only items of this category")] = None,
) -> Response:
    """Items for this user with the reason for each, from their own activity.

    A user without interests yet gets popular items, then other catalog items,
    each labelled as such. The list's full trace is kept under its `recommendation_id`.
    """
    user = get_user(session, tenant.id, user_id)
    out = service.recommend(session, user, rt, service.RecommendationRequest(
        k=k, explain=explain, category=category))
    # Built and checked by the service already: serialize once, skipping FastAPI's
    # second validation (and the worker-thread hop it takes for a sync route).
    return Response(out.model_dump_json(), media_type="application/json")


@router.get("/recommendations/{recommendation_id}", response_model=TraceOut)
def trace(recommendation_id: RecommendationIdPath, tenant: TenantDep,
          session: SessionDep) -> TraceOut:
    """How a list was made (facets, strengths, candidates, scores, parameters) and what
    the user did since with each item (events sent with this `recommendation_id`)."""
    return service.get_trace(session, tenant.id, recommendation_id)
