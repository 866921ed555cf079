"""Concurrent ingest of overlapping batches: no error, no event twice, no event lost."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.core.config import Settings
from service.ingest import service as ingest_service
from service.main import create_app
from service.users.models import User
from tests.utils.api import ApiTenant, event, item, make_tenant
from tests.utils.embeddings import HashedWordsEmbedder


def test_overlapping_concurrent_batches(tenant: ApiTenant) -> None:
    tenant.put("/v1/items", json={"items": [item(f"i{n}") for n in range(5)]})
    batches = [
        [event(f"u{(b + n) % 7}", "view", f"i{n % 5}", event_id=f"e{(b * 7 + n) % 40}",
               text=None) for n in range(20)]
        for b in range(8)
    ]
    # Give each event id exactly one content so overlaps are duplicates, not conflicts.
    content: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for e in batch:
            content.setdefault(e["event_id"], e)
    batches = [[content[e["event_id"]] for e in batch] for batch in batches]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda b: tenant.post("/v1/events", json={"events": b}), batches))
    assert [a.status_code for a in answers] == [200] * len(batches), [a.text for a in answers]
    assert sum(a.json()["accepted"] for a in answers) == len(content)

    stored = set()
    for u in {e["user_id"] for e in content.values()}:
        stored |= {e["event_id"] for e in tenant.get(f"/v1/users/{u}/events",
                                                     params={"limit": 500}).json()["events"]}
    assert stored == set(content)


@pytest.mark.postgres
def test_two_batches_of_one_user_counting_at_once_do_not_deadlock(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both batches have written their events (each holding the foreign key's KEY SHARE
    lock on the user) before either counts them: the count must wait, not deadlock."""
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url,
                        refresh_worker=False)
    both_written = threading.Barrier(2, timeout=20)
    count = ingest_service._mark_stale

    def count_together(*args: Any) -> None:
        both_written.wait()
        count(*args)

    with TestClient(create_app(settings, embedder=HashedWordsEmbedder())) as client:
        tenant = make_tenant(client, "acme")
        tenant.put("/v1/items", json={"items": [item("i0")]})
        first = tenant.post("/v1/events", json={"events": [event("u1", "view", "i0",
                                                                 event_id="e0", text=None)]})
        assert first.status_code == 200, first.text
        monkeypatch.setattr(ingest_service, "_mark_stale", count_together)
        batches = [[event("u1", "view", "i0", event_id=f"e{b}-{n}", text=None) for n in range(3)]
                   for b in (1, 2)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(lambda b: tenant.post("/v1/events", json={"events": b}),
                                    batches))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        with client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
            counted = session.execute(select(User.events_since_refresh)
                                      .where(User.user_id == "u1")).scalar_one()
        assert counted == 7
