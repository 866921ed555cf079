from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session

from service.core.errors import ERROR_RESPONSES, ErrorResponse
from service.core.pagination import CURSOR_DOC, decode_cursor, paginate, parse_key
from service.core.schemas import UserIdPath
from service.deps import ProfilesDep, SessionDep, TenantDep
from service.ingest.evidence import EvidenceEvent, evidence_events
from service.profiles import edits
from service.profiles.forecast import (
    FacetState,
    ForecastRules,
    forecast_mix,
    forecast_profile,
    version_point,
)
from service.profiles.merge import DecayRules, decayed_strength
from service.profiles.models import Profile, ProfileFacetRow, ProfileVersion
from service.profiles.reads import facet_rows, to_facet, versions
from service.profiles.runtime import ProfileRuntime
from service.profiles.schemas import (
    EvidenceOut,
    FacetDeleted,
    FacetForecastOut,
    FacetOut,
    FacetPatch,
    MixShare,
    ProfileForecast,
    ProfileHistory,
    ProfileOut,
    ProfileVersionOut,
)
from service.profiles.worker import refresh_now
from service.users.models import User
from service.users.service import get_user

router = APIRouter(prefix="/v1/users", tags=["profiles"], responses=ERROR_RESPONSES)

FacetIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,40}$", description="a facet id")]

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse,
          "description": "the model server or the vector store is unreachable"},
}


def facet_out(
    row: ProfileFacetRow, evidence: dict[str, EvidenceEvent], at: datetime,
    rules: DecayRules,
) -> FacetOut:
    f = to_facet(row, with_embedding=False)
    return FacetOut(
        facet_id=f.facet_id, label=f.label, description=f.description,
        strength=round(decayed_strength(f, at, rules), 6), horizon=f.horizon,
        polarity=f.polarity, reinforcements=f.reinforcements, first_seen=f.first_seen,
        last_reinforced=f.last_reinforced, pinned=f.pinned, suppressed=f.suppressed,
        evidence=[
            EvidenceOut(**vars(evidence[e])) if e in evidence
            else EvidenceOut(event_id=e, type=None, ts=None)
            for e in f.evidence
        ],
    )


def profile_out(
    session: Session, user: User, rt: ProfileRuntime, at: datetime
) -> ProfileOut:
    """The profile with every strength decayed to `at`, strongest first."""
    profile = session.get(Profile, user.id)
    rows = [r for r in facet_rows(session, user.id) if not r.archived]
    evidence = evidence_events(session, user, {e for r in rows for e in r.evidence})
    rules = rt.rules
    shown = sorted((facet_out(r, evidence, at, rules) for r in rows),
                   key=lambda f: (-f.strength, f.facet_id))
    return ProfileOut(
        user_id=user.user_id, version=profile.version if profile else 0, as_of=at,
        refreshed_at=profile.refreshed_at if profile else None,
        narrative=profile.narrative if profile else "", stale=user.stale,
        events_since_refresh=user.events_since_refresh,
        facets=[f for f in shown if not f.suppressed],
        suppressed=[f for f in shown if f.suppressed],
    )


HISTORY_CURSOR = "v"  # `v|<version>`: the last version a page showed
HISTORY_PAGE = 100
HISTORY_MAX = 400  # versions a forecast reads at most (a window of frequent refreshes)


def recent_versions(session: Session, user: User, since: datetime) -> list[ProfileVersion]:
    """The newest versions, back to the first one written at or before `since`."""
    found: list[ProfileVersion] = []
    before: int | None = None
    while len(found) < HISTORY_MAX:
        page = versions(session, user, HISTORY_PAGE, before)
        found.extend(page)
        if len(page) < HISTORY_PAGE or page[-1].at <= since:
            break
        before = page[-1].version
    return found


def forecast_out(
    session: Session, user: User, rt: ProfileRuntime, at: datetime, days: int
) -> ProfileForecast:
    """Each active facet over the next `days` from `at`, and the like-facets' mix."""
    rules = rt.rules
    forecast_rules = ForecastRules(period=timedelta(days=days))
    profile = session.get(Profile, user.id)
    facets = {r.facet_id: to_facet(r, with_embedding=False)
              for r in facet_rows(session, user.id)}
    current = [FacetState(f.facet_id, decayed_strength(f, at, rules), f.horizon, f.polarity,
                          f.reinforcements, f.pinned, active=not f.archived and not f.suppressed)
               for f in facets.values()]
    history = [version_point(v.version, v.at, v.facets, v.first_event_ts)
               for v in recent_versions(session, user, at - forecast_rules.lookback)]
    forecasts = forecast_profile(current, history, at, rules, forecast_rules)
    mix = forecast_mix(forecasts)
    return ProfileForecast(
        user_id=user.user_id, version=profile.version if profile else 0, as_of=at, days=days,
        period_end=at + forecast_rules.period,
        facets=[FacetForecastOut(
            facet_id=f.facet_id, label=facets[f.facet_id].label, polarity=f.polarity,
            horizon=facets[f.facet_id].horizon, pinned=facets[f.facet_id].pinned,
            strength=round(f.strength, 6), decayed_strength=round(f.decayed, 6),
            forecast_strength=round(f.forecast, 6), trend_per_day=round(f.trend_per_day, 6),
            reinforcements_per_day=round(f.hits_per_day, 6),
        ) for f in forecasts],
        mix=[MixShare(facet_id=facet_id, label=facets[facet_id].label, share=round(share, 6))
             for facet_id, share in sorted(mix.items(), key=lambda m: (-m[1], m[0]))],
    )


@router.post(
    "/{user_id}/profile/refresh",
    response_model=ProfileOut,
    responses={
        409: {"model": ErrorResponse, "description": "no events to build a profile from, "
              "or a worker is refreshing this user (`refresh_in_progress`, with Retry-After)"},
        502: {"model": ErrorResponse, "description": "the model's answers were unusable"},
        **UNAVAILABLE,
    },
)
def refresh(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep, rt: ProfilesDep
) -> ProfileOut:
    """Summarize new activity and merge it into the profile now.

    Without new events no model is called: the new version records decay only.
    On failure the last good profile stays and the user stays stale. The call runs as
    the user's refresh job: when a worker is refreshing the same user, it waits for
    that refresh (`INTEREST_REFRESH_WAIT_SECONDS`) and answers with its result.
    """
    user = get_user(session, tenant.id, user_id)
    version = refresh_now(session, user, rt, trigger="refresh",
                          wait=rt.settings.refresh_wait_seconds)
    session.refresh(user)
    return profile_out(session, user, rt, version.at if version else rt.clock())


@router.get("/{user_id}/profile", response_model=ProfileOut)
def get_profile(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep, rt: ProfilesDep
) -> Response:
    """The user's interests with strengths decayed to now, and the events behind them."""
    user = get_user(session, tenant.id, user_id)
    # Built and validated once here; FastAPI would validate the same model again.
    body = profile_out(session, user, rt, rt.clock()).model_dump_json()
    return Response(body, media_type="application/json")


@router.get("/{user_id}/profile/history", response_model=ProfileHistory)
def history(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100, description=CURSOR_DOC)] = None,
    before: Annotated[int | None, Query(ge=1, description="versions older than this")] = None,
) -> ProfileHistory:
    """Every version, newest first: enough to plot each facet's strength over time.

    Pages by `cursor`; `before` (a version number, what `next_before` gives) still works.
    """
    user = get_user(session, tenant.id, user_id)
    if cursor is not None:
        (version,) = decode_cursor(cursor, HISTORY_CURSOR, 1)
        after = parse_key(version, int)
        before = after if before is None else min(before, after)
    found, next_cursor = paginate(versions(session, user, limit + 1, before), limit,
                                  HISTORY_CURSOR, lambda v: (v.version,))
    return ProfileHistory(user_id=user.user_id,
                          versions=[ProfileVersionOut.model_validate(v) for v in found],
                          next_before=found[-1].version if next_cursor else None,
                          next_cursor=next_cursor)


@router.get("/{user_id}/profile/forecast", response_model=ProfileForecast)
def forecast(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep, rt: ProfilesDep,
    days: Annotated[int, Query(ge=1, le=365, description="length of the forecast period")] = 7,
) -> ProfileForecast:
    """Each active facet's strength over the next `days`, decay plus the trend of its
    recent reinforcements, and the resulting mix of like-facets (sums to 1).

    Deterministic: the same profile history and time give the same forecast. The
    formula is documented in `service/profiles/forecast.py`.
    """
    user = get_user(session, tenant.id, user_id)
    return forecast_out(session, user, rt, rt.clock(), days)


@router.patch("/{user_id}/profile/facets/{facet_id}", response_model=FacetOut,
              responses=UNAVAILABLE)
def edit_facet(
    user_id: UserIdPath, facet_id: FacetIdPath, patch: FacetPatch, tenant: TenantDep,
    session: SessionDep, rt: ProfilesDep,
) -> FacetOut:
    """Pin, suppress or reword a facet; a new label or description is re-embedded."""
    user = get_user(session, tenant.id, user_id)
    row = edits.edit_facet(session, user, facet_id, edits.FacetEdit(
        pinned=patch.pinned, suppressed=patch.suppressed, label=patch.label,
        description=patch.description), rt)
    evidence = evidence_events(session, user, set(row.evidence))
    return facet_out(row, evidence, rt.clock(), rt.rules)


@router.delete("/{user_id}/profile/facets/{facet_id}", response_model=FacetDeleted,
               responses=UNAVAILABLE)
def delete_facet(
    user_id: UserIdPath, facet_id: FacetIdPath, tenant: TenantDep, session: SessionDep,
    rt: ProfilesDep,
) -> FacetDeleted:
    """Remove a facet now; new activity may bring it back (suppress it to prevent that)."""
    user = get_user(session, tenant.id, user_id)
    edits.delete_facet(session, user, facet_id, rt)
    profile = session.get(Profile, user.id)
    return FacetDeleted(facet_id=facet_id, version=profile.version if profile else 0)
