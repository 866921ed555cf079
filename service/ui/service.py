"""The tenant overview the inspector opens on: counts, models, refreshes, the queue."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from service.catalog.models import Item, pending_index
from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from service.summaries.models import SummaryRun
from service.tenants.models import Tenant
from service.training.store import ModelRegistry
from service.ui.schemas import ModelsInUse, QueuedUser, RefreshQueue, RefreshRun, TenantOverview
from service.users.models import User
from service.vectors.embeddings import Embedder

RECENT_RUNS = 20
QUEUE_SHOWN = 10


def _count(session: Session, query: Select[int]) -> int:
    return int(session.scalar(query) or 0)


def tenant_overview(session: Session, tenant: Tenant, settings: Settings, llm: LLMRuntime,
                    embedder: Embedder, models: ModelRegistry, at: datetime) -> TenantOverview:
    users = _count(session, select(func.count()).select_from(User)
                   .where(User.tenant_id == tenant.id))
    items = _count(session, select(func.count()).select_from(Item)
                   .where(Item.tenant_id == tenant.id))
    pending = _count(session, select(func.count()).select_from(Item).where(
        Item.tenant_id == tenant.id, pending_index()))
    stale = (User.tenant_id == tenant.id) & User.stale
    due = stale & (User.events_since_refresh >= settings.refresh_after_events)
    queue = RefreshQueue(
        stale_users=_count(session, select(func.count()).select_from(User).where(stale)),
        due_users=_count(session, select(func.count()).select_from(User).where(due)),
        refresh_after_events=settings.refresh_after_events,
        next=[QueuedUser(user_id=user_id, events_since_refresh=n,
                         due=n >= settings.refresh_after_events)
              for user_id, n in session.execute(
                  select(User.user_id, User.events_since_refresh).where(stale)
                  .order_by(User.events_since_refresh.desc(), User.user_id)
                  .limit(QUEUE_SHOWN))])
    runs = [RefreshRun(run_id=run.id, user_id=user_id, status=run.status,
                       created_at=run.created_at, model=run.model, latency_ms=run.latency_ms,
                       events_read=run.events_read, error_code=run.error_code, error=run.error)
            for run, user_id in session.execute(
                select(SummaryRun, User.user_id).join(User, User.id == SummaryRun.user_pk)
                .where(SummaryRun.tenant_id == tenant.id)
                .order_by(SummaryRun.id.desc()).limit(RECENT_RUNS))]
    failures = _count(session, select(func.count()).select_from(SummaryRun).where(
        SummaryRun.tenant_id == tenant.id, SummaryRun.status != "ok",
        SummaryRun.created_at >= at - timedelta(hours=24)))
    meta = models.store.current_meta(tenant.id)  # the metadata only, not the artifact
    return TenantOverview(
        tenant=tenant.name, users=users, catalog_items=items, index_pending=pending,
        models=ModelsInUse(
            llm_backend=settings.llm_backend, llm_model=llm.model_name,
            embedding_model=embedder.name,
            recommender_version=meta.version if meta else None,
            recommender_trained_at=meta.trained_at if meta else None,
            recommender_ranker=bool(meta and meta.ranker),
            half_life_short_days=settings.half_life_short_days,
            half_life_long_days=settings.half_life_long_days),
        refresh_queue=queue, recent_refreshes=runs, failures_24h=failures)
