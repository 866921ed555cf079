"""Training as the service runs it: by the CLI, by the worker when a tenant is due, and
by the demo load. One function trains with the learned ranker and the item vectors it
needs; another says which tenants are due.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.catalog.service import tag_counts
from service.core.config import Settings
from service.ingest.models import Event
from service.profiles.runtime import rules_from
from service.summaries.grouping import TagWeights
from service.tenants.models import Tenant
from service.training.contract import ModelMeta
from service.training.features import FEATURE_VERSION
from service.training.pseudo_facets import GroupingInputs
from service.training.ranker import saved_feature_version, train_ranker
from service.training.service import train_tenant
from service.training.store import RANKER_DIR, ArtifactStore, models_root
from service.vectors.store import VectorStore

log = logging.getLogger(__name__)


def item_vectors(session: Session, tenant_id: int, vectors: VectorStore | None
                 ) -> dict[str, npt.NDArray[np.float32]] | None:
    """The tenant's indexed item vectors (the ranker's facet features compare them), or
    None when the vector store cannot give them: training goes on without."""
    if vectors is None:
        return None
    versions: dict[str, str] = {
        str(item_id): str(indexed) for item_id, indexed in session.execute(
            select(Item.item_id, Item.indexed_hash).where(Item.tenant_id == tenant_id,
                                                          Item.indexed_hash.is_not(None)))}
    try:
        found: dict[str, Any] = vectors.vectors(tenant_id, "items", versions)
    except Exception as exc:  # any client error: the vector store is optional here
        log.warning("training tenant %s without item vectors (%s: %s)", tenant_id,
                    type(exc).__name__, exc)
        return None
    return {item_id: np.asarray(v, dtype=np.float32) for item_id, v in found.items()}


def grouping_inputs(session: Session, tenant_id: int, settings: Settings) -> GroupingInputs:
    """The tenant's catalog as grouping reads it and the merge rules a refresh applies,
    for the ranker's pseudo-facets."""
    items = {item.item_id: item for item in session.scalars(
        select(Item).where(Item.tenant_id == tenant_id))}
    counts = tag_counts(session, tenant_id)
    return GroupingInputs.of(items, TagWeights.from_counts(counts.document_frequency,
                                                        counts.items), settings.rating_max,
                          rules_from(settings))


def train_with_ranker(session: Session, tenant_id: int, settings: Settings,
                      vectors: VectorStore | None, *, progress: bool = False) -> ModelMeta:
    """Train and save a new version with the learned ranker (see `train_tenant`)."""
    found = grouping = None
    if settings.ranker_facet_features:
        found = item_vectors(session, tenant_id, vectors)
        grouping = grouping_inputs(session, tenant_id, settings)
    return train_tenant(session, tenant_id, settings, progress=progress,
                        ranker_trainer=partial(train_ranker, item_vectors=found,
                                               progress=progress, grouping=grouping,
                                               workers=settings.train_workers,
                                               choose_profile=settings
                                               .ranker_choose_facet_features),
                        sequence_seconds=settings.train_sequence_seconds,
                        sequence_epochs=settings.train_sequence_epochs,
                        workers=settings.train_workers)


def tenants_due(session: Session, settings: Settings, now: datetime) -> list[int]:
    """Tenants with item events whose models are missing, at least `train_after_events`
    new item events behind, older than `train_max_age_hours` with anything new, or whose
    ranker was trained on another feature list than this code builds (after an upgrade:
    it cannot load, and the fixed blend ranks until the tenant trains again).

    What is new is read past each artifact's `last_event_id`, in one query over the
    events stored since the oldest of them (the primary key's range, not every event of
    every tenant each pass), so deleted events (a deleted user's) do not hide new ones.
    An artifact saved before that id was kept is judged as it was then: the tenant's
    item events counted, less those it used."""
    store = ArtifactStore(models_root(settings))
    metas = {tenant_id: store.current_meta(tenant_id)
             for tenant_id in session.scalars(select(Tenant.id).order_by(Tenant.id))}
    marks = {t: m.last_event_id for t, m in metas.items()
             if m is not None and m.last_event_id is not None}
    behind: dict[int, int] = {}
    if marks:
        # Grouped by `tenant_id + 0`, not the column: grouped by the column, SQLite walks
        # ix_events_tenant_ts (every event) for its order instead of the id range.
        tenant = (Event.tenant_id + 0).label("tenant")
        behind.update((t, new) for t, new in session.execute(
            select(tenant, func.count())
            .where(Event.id > min(marks.values()), Event.item_id.is_not(None),
                   Event.id > case(marks, value=Event.tenant_id, else_=None))
            .group_by(tenant)))
    used = {t: m.events_used for t, m in metas.items()
            if m is not None and m.last_event_id is None}
    if used:  # artifacts from before `last_event_id`
        behind.update((t, events - used[t]) for t, events in session.execute(
            select(Event.tenant_id, func.count())
            .where(Event.tenant_id.in_(used), Event.item_id.is_not(None))
            .group_by(Event.tenant_id)))
    due: list[int] = []
    for tenant_id, meta in metas.items():
        if meta is None:
            if _has_item_events(session, tenant_id):
                due.append(tenant_id)
            continue
        new = behind.get(tenant_id, 0)
        trained_at = datetime.fromisoformat(meta.trained_at)
        old = now - trained_at > timedelta(hours=settings.train_max_age_hours)
        saved = saved_feature_version(store.tenant_dir(tenant_id) / meta.version / RANKER_DIR)
        if (new >= settings.train_after_events or (old and new > 0)
                or (saved not in (None, FEATURE_VERSION)
                    and _has_item_events(session, tenant_id))):
            due.append(tenant_id)
    return due


def _has_item_events(session: Session, tenant_id: int) -> bool:
    return session.scalar(select(Event.id).where(
        Event.tenant_id == tenant_id, Event.item_id.is_not(None)).limit(1)) is not None
