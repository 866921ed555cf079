"""Every list route pages with one cursor style, and the cursors and parameters the
routes accepted before it (the event cursor without its kind, `before` on history)
still work."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from service.core.pagination import decode_cursor, encode_cursor
from service.profiles.models import ProfileVersion
from service.summaries.models import SummaryRun
from service.users.models import User
from tests.utils.api import NOW, ApiTenant, event, item

ROWS = 11  # pages of 3: 3 + 3 + 3 + 2


def walk(t: ApiTenant, url: str, rows: str, key: str, **params: Any) -> list[Any]:
    """The keys of every row, page after page, following `next_cursor` to the end."""
    keys: list[Any] = []
    cursor = None
    while True:
        r = t.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        keys += [row[key] for row in r.json()[rows]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return keys


def old_style(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.fixture
def user_rows(tenant: ApiTenant) -> ApiTenant:
    """`u00`..`u10`; `u00` has ROWS events, ROWS profile versions and ROWS summary runs."""
    tenant.put("/v1/items", json={"items": [item("i1")]})
    events = [event(f"u{n:02}", event_id=f"other{n}") for n in range(1, ROWS)]
    # Two events at the same time: the cursor must tell them apart by more than `ts`.
    events += [event("u00", event_id=f"e{n:02}", ts=NOW - timedelta(minutes=min(n, 5)))
               for n in range(ROWS)]
    assert tenant.post("/v1/events", json={"events": events}).status_code == 200
    with tenant.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        user = session.scalars(select(User).where(User.user_id == "u00")).one()
        for n in range(1, ROWS + 1):
            session.add(ProfileVersion(tenant_id=user.tenant_id, user_pk=user.id, version=n,
                                       trigger="refresh", at=NOW, facets=[], narrative=""))
            session.add(SummaryRun(tenant_id=user.tenant_id, user_pk=user.id, status="ok",
                                   model="m", prompt_name="p", prompt_version="1",
                                   created_at=NOW))
        session.commit()
    return tenant


def test_every_list_route_pages_through_every_row_once(user_rows: ApiTenant) -> None:
    t = user_rows
    users = walk(t, "/v1/users", "users", "user_id", limit=3)
    assert users == [f"u{n:02}" for n in range(ROWS)]
    events = walk(t, "/v1/users/u00/events", "events", "event_id", limit=3)
    assert sorted(events) == [f"e{n:02}" for n in range(ROWS)] and len(set(events)) == ROWS
    versions = walk(t, "/v1/users/u00/profile/history", "versions", "version", limit=3)
    assert versions == list(range(ROWS, 0, -1))
    runs = walk(t, "/v1/users/u00/summaries", "runs", "run_id", limit=3)
    assert len(runs) == ROWS and runs == sorted(set(runs), reverse=True)


def test_cursors_issued_before_one_style_still_work(user_rows: ApiTenant) -> None:
    t = user_rows
    first = t.get("/v1/users/u00/events", params={"limit": 4}).json()
    # The event cursor used to be `<ts>|<event pk>` with no kind in front.
    ts, pk = decode_cursor(first["next_cursor"], "e", 2)
    old = t.get("/v1/users/u00/events", params={"limit": 4, "cursor": old_style(f"{ts}|{pk}")})
    new = t.get("/v1/users/u00/events", params={"limit": 4, "cursor": first["next_cursor"]})
    assert old.status_code == 200 and old.json() == new.json()
    # The users cursor never changed: `u|<last user id>`.
    page = t.get("/v1/users", params={"limit": 2}).json()
    assert page["next_cursor"] == old_style("u|u01")
    # History still takes `before` and answers `next_before` beside `next_cursor`.
    page = t.get("/v1/users/u00/profile/history", params={"limit": 4}).json()
    assert page["next_before"] == ROWS - 3 and page["next_cursor"] == encode_cursor("v", ROWS - 3)
    by_before = t.get("/v1/users/u00/profile/history",
                      params={"limit": 4, "before": page["next_before"]}).json()
    by_cursor = t.get("/v1/users/u00/profile/history",
                      params={"limit": 4, "cursor": page["next_cursor"]}).json()
    assert by_before == by_cursor and [v["version"] for v in by_cursor["versions"]] == [7, 6, 5, 4]


@pytest.mark.parametrize("url", ["/v1/users", "/v1/users/u00/events",
                                 "/v1/users/u00/profile/history", "/v1/users/u00/summaries"])
def test_a_cursor_of_another_list_or_none_at_all_is_refused(user_rows: ApiTenant,
                                                            url: str) -> None:
    for cursor in ["garbage!!", old_style("x|1"), encode_cursor("zz", 1), old_style("v|x")]:
        r = user_rows.get(url, params={"cursor": cursor})
        assert r.status_code == 422, (cursor, r.text)
        assert r.json()["error"]["code"] == "validation_error"
        assert r.json()["error"]["details"][0]["code"] == "invalid_cursor"
