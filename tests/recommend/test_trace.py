"""Traces stored by older versions still read: the first traces were dict literals with
every key written out (no sources, features, reasons, scoring or calibration), and the
typed ones written now leave defaults out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NotRequired, get_origin, get_type_hints

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.catalog.service import upsert_items
from service.core.config import Settings
from service.core.db import make_engine, make_sessionmaker, migrate
from service.ingest.service import ingest_events
from service.recommend.models import RecommendationTrace
from service.recommend.schemas import TraceCandidate, TraceParameters
from service.recommend.trace import (
    CandidateRow,
    StoredFacet,
    StoredItem,
    get_trace,
    write_trace,
)
from service.tenants.service import create_tenant
from service.users.models import User

AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# As e348f14 wrote them, key for key.
OLD_PARAMETERS = {
    "k": 2, "explain": "llm", "category": None, "pool": 40, "facet_floor": 5,
    "fusion": "max", "mmr_lambda": 0.7, "avoid_penalty_from": 0.35, "avoid_drop_from": 0.5,
    "llm_explain_top": 3, "half_life_short_days": 7.0, "half_life_long_days": 90.0,
    "popular_window_days": 30,
}
OLD_FACETS = [
    {"facet_id": "f_space", "label": "Space films", "description": "Films set in space.",
     "polarity": "like", "horizon": "short", "pinned": False, "strength": 0.812345,
     "stored_strength": 0.9, "strength_at": "2025-02-27T12:00:00+00:00",
     "evidence": ["e1", "e2"], "quota": 40},
    {"facet_id": "f_horror", "label": "Horror", "description": "Horror films.",
     "polarity": "avoid", "horizon": "long", "pinned": True, "strength": 0.5,
     "stored_strength": 0.5, "strength_at": "2025-01-01T00:00:00+00:00",
     "evidence": ["e3"], "quota": None},
]
OLD_CANDIDATES = [
    {"item_id": "gravity", "title": "Gravity", "sims": [0.8123, 0.1], "base_score": 0.659881,
     "avoid_penalty": 0.0, "score": 0.659881, "best_facet": "f_space", "status": "returned",
     "mmr_rank": 0, "mmr_objective": 0.461917},
    {"item_id": "alien", "title": "Alien", "sims": [0.7, 0.6], "base_score": 0.568642,
     "avoid_penalty": 0.568642, "score": 0.0, "best_facet": "f_space",
     "status": "dropped_avoid", "mmr_rank": None, "mmr_objective": None},
]
OLD_ITEMS: list[dict[str, Any]] = [
    {"item_id": "gravity", "title": "Gravity", "score": 0.659881,
     "because": {"facet_id": "f_space", "label": "Space films", "strength": 0.812345,
                 "similarity": 0.8123, "evidence": [
                     {"event_id": "e1", "type": "view", "ts": "2025-02-27T12:00:00Z",
                      "item_id": "interstellar", "title": "Interstellar", "text": None}]},
     "explanation": "Because you watched Interstellar [e1].", "explanation_source": "llm",
     "rank": 0, "explanation_problem": None,
     "llm": {"prompt_name": "explain_recommendation", "prompt_version": "1",
             "model": "smollm2", "latency_ms": 120, "prompt_tokens": 300,
             "output_tokens": 20, "cited": ["e1"]}},
]


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        yield session
    engine.dispose()


def _user_with_feedback(session: Session) -> User:
    """User u1, with a click on a returned item that carries `rec_old`."""
    tenant, _ = create_tenant(session, "shop")
    upsert_items(session, tenant.id, [{"item_id": "gravity", "title": "Gravity"}])
    ingest_events(session, tenant.id, [
        {"event_id": "click-1", "user_id": "u1", "type": "click", "item_id": "gravity",
         "ts": AT.isoformat(), "recommendation_id": "rec_old"}], Settings())
    return session.scalars(select(User).where(User.tenant_id == tenant.id)).one()


def test_an_old_dict_literal_trace_still_reads(session: Session) -> None:
    user = _user_with_feedback(session)
    session.add(RecommendationTrace(
        tenant_id=user.tenant_id, user_pk=user.id, recommendation_id="rec_old",
        created_at=AT, source="profile", parameters=OLD_PARAMETERS, facets=OLD_FACETS,
        candidates=OLD_CANDIDATES, items=OLD_ITEMS,
        excluded={"consumed": 3, "not_in_catalog": 0, "category": 0, "dropped_avoid": 1,
                  "dropped_score": 0, "retrieval_widened": 0}))
    session.commit()

    trace = get_trace(session, user.tenant_id, "rec_old")
    assert (trace.user_id, trace.source, trace.created_at) == ("u1", "profile", AT)
    parameters = trace.parameters
    assert (parameters.k, parameters.explain, parameters.pool) == (2, "llm", 40)
    # What old traces did not record reads as what they meant: facets scoring, no models.
    assert (parameters.scoring, parameters.models, parameters.calibration) == ("facets", None, 0)
    assert parameters.notes == [] and parameters.feature_names is None
    assert [f.facet_id for f in trace.facets] == ["f_space", "f_horror"]
    assert trace.facets[0].strength_at == datetime(2025, 2, 27, 12, tzinfo=UTC)
    gravity, alien = trace.candidates
    assert gravity.similarities == {"f_space": 0.8123, "f_horror": 0.1}
    assert (gravity.sources, gravity.features, gravity.reason) == ({}, None, None)
    assert (alien.status, alien.mmr_rank, alien.score) == ("dropped_avoid", None, 0.0)
    item = trace.items[0]
    assert item.because is not None and item.because.kind == "facet"
    assert item.llm is not None and item.llm.cited == ["e1"] and item.popular_tier is None
    assert [f.event_id for f in item.feedback] == ["click-1"] and trace.other_feedback == []
    assert trace.excluded["dropped_avoid"] == 1


def _required(typed: type) -> set[str]:
    """A TypedDict's keys not marked NotRequired (`__required_keys__` cannot tell under
    postponed annotations on Python 3.11)."""
    hints = get_type_hints(typed, include_extras=True)
    return {k for k, t in hints.items() if get_origin(t) is not NotRequired}


def test_old_stored_rows_parse_as_todays_stored_models() -> None:
    """The write-side models accept the old rows, and write them back with the same keys
    and values; old candidate rows hold only `CandidateRow`'s keys (those without a value
    as null, where today's leave them out)."""
    for row in OLD_FACETS:
        assert StoredFacet.model_validate(row).model_dump(mode="json") == row
    for row in OLD_CANDIDATES:
        assert row.keys() <= CandidateRow.__annotations__.keys()
        assert {k for k, v in row.items() if v is not None} >= _required(CandidateRow)
    stored = StoredItem.model_validate(OLD_ITEMS[0]).model_dump(mode="json")
    assert stored == {**OLD_ITEMS[0], "popular_tier": None,
                      "because": {**OLD_ITEMS[0]["because"], "kind": "facet"}}


def test_candidate_rows_are_the_fields_the_trace_reads_back(session: Session) -> None:
    """`CandidateRow` is the one declaration of a stored candidate: its keys are
    `TraceCandidate`'s (with `sims` for `similarities`), so whatever a list stores, every
    optional field set or none, is read back field for field."""
    declared = set(CandidateRow.__annotations__)
    assert declared - {"sims"} == set(TraceCandidate.model_fields) - {"similarities"}
    rows: list[CandidateRow] = [
        {"item_id": "gravity", "title": "Gravity", "sims": [0.8123, 0.1],
         "base_score": 0.659881, "avoid_penalty": 0.0, "score": 0.659881,
         "best_facet": "f_space", "status": "returned", "mmr_rank": 0,
         "mmr_objective": 0.461917,
         "sources": {"facet": {"score": 0.7, "rank": 0},
                     "sequence": {"score": 0.25, "rank": 3, "via": "e1"}},
         "features": [0.5, 1.0, 0.0], "reason": "facet", "explained": False},
        {"item_id": "alien", "title": "Alien", "sims": [0.7, 0.6], "base_score": 3.0,
         "avoid_penalty": 0.0, "score": 3.0, "best_facet": None, "status": "dropped_avoid",
         "popular_events": 3, "popular_tier": "recent"},
    ]
    assert set(rows[0]) | set(rows[1]) == declared  # every field is exercised
    user = _user_with_feedback(session)
    write_trace(session, user, "rec_rows", AT, "hybrid",
                TraceParameters.model_validate(OLD_PARAMETERS), [
                    StoredFacet.model_validate(f) for f in OLD_FACETS], rows, [], {})
    session.commit()
    stored = session.execute(select(RecommendationTrace.candidates).where(
        RecommendationTrace.recommendation_id == "rec_rows")).scalar_one()
    assert stored == rows  # nothing added or renamed on the way in
    read = get_trace(session, user.tenant_id, "rec_rows").candidates
    for row, candidate in zip(rows, read, strict=True):
        got = candidate.model_dump(mode="json", exclude_defaults=True)
        assert got.pop("similarities") == dict(zip(["f_space", "f_horror"], row["sims"],
                                                   strict=True))
        assert got == {k: v for k, v in row.items() if k != "sims"}
