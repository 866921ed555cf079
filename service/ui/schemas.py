from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ModelsInUse(BaseModel):
    llm_backend: str = Field(description="embedded, openai or fake")
    llm_model: str
    embedding_model: str
    recommender_version: str | None = Field(description="the tenant's trained models; "
                                                        "null until they are trained")
    recommender_trained_at: str | None
    recommender_ranker: bool = Field(description="a learned ranker orders the lists")
    half_life_short_days: float = Field(description="decay of short-term facets")
    half_life_long_days: float = Field(description="decay of long-term facets")


class RefreshRun(BaseModel):
    """One recent summary run (what a profile refresh asks the model)."""

    run_id: int
    user_id: str
    status: str
    created_at: datetime
    model: str
    latency_ms: int
    events_read: int
    error_code: str | None
    error: str | None


class QueuedUser(BaseModel):
    user_id: str
    events_since_refresh: int
    due: bool = Field(description="enough new events for the worker to refresh now")


class RefreshQueue(BaseModel):
    stale_users: int = Field(description="users with events no refresh has read")
    due_users: int = Field(description="of those, with at least `refresh_after_events`")
    refresh_after_events: int
    next: list[QueuedUser] = Field(description="most new events first")


class TenantOverview(BaseModel):
    """What the inspector's first page shows: one tenant at a glance."""

    tenant: str
    users: int
    catalog_items: int
    index_pending: int = Field(description="items stored but not embedded yet")
    models: ModelsInUse
    refresh_queue: RefreshQueue
    recent_refreshes: list[RefreshRun] = Field(description="newest first, failures included")
    failures_24h: int = Field(description="failed summary runs in the last 24 hours")
