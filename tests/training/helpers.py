"""A small tenant to train, shared by the training tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import NOW, event, item, make_tenant

SHOWS = ["m1", "m2", "m3", "m4", "m5", "m6"]


def fill_tenant(client: TestClient) -> list[dict[str, Any]]:
    """Tenant acme: twelve users who watch five of the shows in order from different
    starts, rate one, some dislike one; plus a search with no item (not a model event)."""
    t = make_tenant(client, "acme")
    r = t.put("/v1/items", json={"items": [
        item(m, title=f"Show {m}", tags=["drama" if n % 2 else "comedy"], category="series")
        for n, m in enumerate(SHOWS)]})
    assert r.status_code == 200, r.text
    events = []
    for u in range(12):
        for step in range(5):
            show = SHOWS[(u + step) % len(SHOWS)]
            when = NOW - timedelta(days=30 - step, minutes=u)
            if step == 3:
                events.append(event(f"u{u}", "rating", show, value=5, ts=when,
                                    event_id=f"u{u}-{step}"))
            elif step == 2 and u % 4 == 0:
                events.append(event(f"u{u}", "dislike", show, ts=when, event_id=f"u{u}-{step}"))
            else:
                events.append(event(f"u{u}", "view", show, ts=when, event_id=f"u{u}-{step}"))
    events.append(event("u0", "search", None, text="more dramas", event_id="s1"))
    r = t.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    return events
