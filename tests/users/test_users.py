"""Forgetting a user removes every row of theirs and nothing of anyone else's."""

from __future__ import annotations

from sqlalchemy import func, select

from service.ingest.models import Event
from service.users.models import User
from tests.utils.api import ApiTenant, event, item


def test_delete_user_removes_their_rows_only(tenant: ApiTenant) -> None:
    tenant.put("/v1/items", json={"items": [item("i1")]})
    tenant.post("/v1/events", json={"events": [
        event("u1", "view", "i1", event_id="a"), event("u1", "like", "i1", event_id="b"),
        event("u2", "view", "i1", event_id="c"),
    ]})
    r = tenant.delete("/v1/users/u1")
    assert r.status_code == 200 and r.json() == {"user_id": "u1", "events_deleted": 2}

    with tenant.client.app.state.sessions() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(User).where(
            User.user_id == "u1")) == 0
        assert set(session.scalars(select(Event.event_id))) == {"c"}
    assert tenant.get("/v1/users/u1/events").status_code == 404
    assert tenant.get("/v1/items/i1").status_code == 200  # the catalog is not the user's

    # The user can come back; their old event ids are free again.
    again = tenant.post("/v1/events", json={"events": [event("u1", "view", "i1", event_id="a")]})
    assert again.json()["accepted"] == 1


def test_delete_unknown_user_is_404(tenant: ApiTenant) -> None:
    r = tenant.delete("/v1/users/ghost")
    assert r.status_code == 404 and r.json()["error"]["code"] == "user_not_found"
