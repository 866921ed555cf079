"""Forgetting a user removes every row of theirs and nothing of anyone else's."""

from __future__ import annotations

from sqlalchemy import func, select

from service.core.db import Base
from service.ingest.models import Event
from service.models import load_all_models
from service.users.deletion import user_tables
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

    with tenant.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
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


def test_every_table_about_a_user_is_forgotten_dependents_first() -> None:
    tables = user_tables()
    names = [t.name for t in tables]
    # Every table that points at users does so through user_pk, so none is missed.
    load_all_models()
    pointing = {t.name for t in Base.metadata.sorted_tables
                if any(fk.column.table is User.__table__ for fk in t.foreign_keys)}
    assert pointing == set(names)
    assert {"events", "profiles", "profile_facets", "profile_versions", "summary_runs",
            "recommendation_traces", "chat_turns", "jobs"} <= set(names)
    # A table is emptied before every table it points at.
    for n, table in enumerate(tables):
        for fk in table.foreign_keys:
            if fk.column.table.name in names:
                assert names.index(fk.column.table.name) > n, (table.name, fk.column.table.name)
