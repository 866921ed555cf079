"""Training as the worker runs it: which tenants are due, and a pass that trains them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import sqlalchemy
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.core.config import Settings
from service.ingest.models import Event
from service.ingest.service import ingest_events
from service.profiles.worker import RefreshWorker
from service.tenants.service import tenant_by_name
from service.training.features import FEATURE_VERSION
from service.training.jobs import tenants_due, train_with_ranker
from service.training.store import META_FILE, RANKER_DIR, ArtifactStore, models_root
from service.users.service import delete_user
from tests.utils.api import NOW, event
from tests.utils.training import fill_tenant


def test_the_worker_trains_a_tenant_when_due_and_not_again_until_enough_is_new(
        train_client: TestClient, train_settings: Settings) -> None:
    app = train_client.app
    fill_tenant(train_client)
    settings = train_settings.model_copy(update={"train_after_events": 5,
                                                 "train_sequence_seconds": 2.0})
    rt = replace(app.state.container.profiles, settings=settings)  # type: ignore[attr-defined]
    worker = RefreshWorker(app.state.container.sessions, rt)  # type: ignore[attr-defined]
    with app.state.container.sessions() as session:  # type: ignore[attr-defined]
        tenant = tenant_by_name(session, "acme")
        assert tenant is not None
        assert tenants_due(session, settings, NOW) == [tenant.id]  # no models yet

    assert worker.train_once() == {"trained": 1, "train_failed": 0}
    store = ArtifactStore(models_root(settings))
    first = store.current_meta(tenant.id)
    assert first is not None and first.events_used == 60
    with app.state.container.sessions() as session:  # type: ignore[attr-defined]
        assert tenants_due(session, settings, NOW) == []
        # Older than the age limit but nothing new: still not due.
        assert tenants_due(session, settings, NOW + timedelta(days=3)) == []

    new = [event("u1", "view", "m1", ts=NOW - timedelta(minutes=n), event_id=f"late-{n}")
           for n in range(4)]
    with app.state.container.sessions() as session:  # type: ignore[attr-defined]
        ingest_events(session, tenant.id, new, settings)
        # Four new item events: under the threshold of five, and the models are fresh.
        assert tenants_due(session, settings, NOW) == []
        assert tenants_due(session, settings, NOW + timedelta(days=3)) == [tenant.id]
        ingest_events(session, tenant.id, [event("u2", "view", "m2", event_id="late-x")],
                      settings)
        assert tenants_due(session, settings, NOW) == [tenant.id]

    assert worker.train_once()["trained"] == 1
    second = store.current_meta(tenant.id)
    assert second is not None and second.version != first.version
    assert second.events_used == 65

    # A ranker saved by code with another feature list (before an upgrade) cannot load:
    # the tenant is due again, with nothing new.
    ranker_dir = store.tenant_dir(tenant.id) / second.version / RANKER_DIR
    ranker_dir.mkdir(exist_ok=True)
    saved = ranker_dir / "ranker.json"
    meta = json.loads(saved.read_text()) if saved.exists() else {}
    with app.state.container.sessions() as session:  # type: ignore[attr-defined]
        saved.write_text(json.dumps({**meta, "feature_version": FEATURE_VERSION}))
        assert tenants_due(session, settings, NOW) == []
        saved.write_text(json.dumps({**meta, "feature_version": "f2"}))
        assert tenants_due(session, settings, NOW) == [tenant.id]

    # What is new is read past the id of the newest event the training read: a deleted
    # user's events do not hide as many new ones (counting the tenant's events would
    # say 65 - 5 + 5 = 65, all used).
    with app.state.container.sessions() as session:  # type: ignore[attr-defined]
        saved.write_text(json.dumps({**meta, "feature_version": FEATURE_VERSION}))
        newest = session.scalar(select(func.max(Event.id)).where(Event.tenant_id == tenant.id))
        assert second.last_event_id == newest
        assert delete_user(session, tenant.id, "u3", app.state.container.vectors) == 5  # type: ignore[attr-defined]
        ingest_events(session, tenant.id, [
            event("u4", "view", "m3", ts=NOW - timedelta(minutes=n), event_id=f"after-{n}")
            for n in range(4)], settings)
        assert tenants_due(session, settings, NOW) == []  # four new, under five
        # Only item events count (a search names none).
        ingest_events(session, tenant.id, [event("u4", "search", None, text="more",
                                                 event_id="after-search")], settings)
        assert tenants_due(session, settings, NOW) == []
        ingest_events(session, tenant.id, [event("u5", "view", "m1", event_id="after-x")],
                      settings)
        assert tenants_due(session, settings, NOW) == [tenant.id]

        # An artifact saved before the id was kept is judged by counting, as then: 65
        # item events now, 65 used.
        meta_file = store.tenant_dir(tenant.id) / second.version / META_FILE
        stored = json.loads(meta_file.read_text())
        meta_file.write_text(json.dumps({k: v for k, v in stored.items()
                                         if k != "last_event_id"}))
        assert tenants_due(session, settings, NOW) == []
        assert tenants_due(session, settings, NOW + timedelta(days=3)) == []
        meta_file.write_text(json.dumps(stored))
        assert tenants_due(session, settings, NOW) == [tenant.id]


def test_what_is_new_is_read_by_the_id_range_not_every_event(
        train_client: TestClient, train_settings: Settings) -> None:
    """SQLite reads the events past the oldest artifact's id by the primary key, not
    the tenant index over every event (which it walks when grouping by the column)."""
    app = train_client.app
    fill_tenant(train_client)
    engine = app.state.container.engine  # type: ignore[attr-defined]
    with app.state.container.sessions() as session:  # type: ignore[attr-defined]
        tenant = tenant_by_name(session, "acme")
        assert tenant is not None
        train_with_ranker(session, tenant.id, train_settings.model_copy(
            update={"train_sequence_seconds": 1.0}), None)
        statements: list[tuple[str, Any]] = []

        def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append((statement, parameters))

        sqlalchemy.event.listen(engine, "before_cursor_execute", seen)
        try:
            assert tenants_due(session, train_settings, NOW) == []
        finally:
            sqlalchemy.event.remove(engine, "before_cursor_execute", seen)
        grouped = [(s, p) for s, p in statements if "count(" in s and "GROUP BY" in s]
        assert len(grouped) == 1, statements
        plan = str(session.connection().exec_driver_sql(
            "EXPLAIN QUERY PLAN " + grouped[0][0], grouped[0][1]).fetchall())
        assert "INTEGER PRIMARY KEY" in plan and "ix_events_tenant_ts" not in plan, plan
