"""Training as the worker runs it: which tenants are due, and a pass that trains them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from fastapi.testclient import TestClient

from service.core.config import Settings
from service.ingest.service import ingest_events
from service.profiles.worker import RefreshWorker
from service.tenants.service import tenant_by_name
from service.training.features import FEATURE_VERSION
from service.training.jobs import tenants_due
from service.training.store import RANKER_DIR, ArtifactStore, models_root
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
