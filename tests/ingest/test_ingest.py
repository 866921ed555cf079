"""Event ingest through HTTP: validation, all-or-nothing, idempotency, conflicts, paging."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.utils.api import NOW, ApiTenant, event, iso, item


@pytest.fixture
def catalog(tenant: ApiTenant) -> ApiTenant:
    r = tenant.put("/v1/items", json={"items": [item("i1"), item("i2"), item("i3")]})
    assert r.status_code == 200, r.text
    return tenant


def stored(t: ApiTenant, user_id: str) -> list[dict[str, Any]]:
    r = t.get(f"/v1/users/{user_id}/events", params={"limit": 500})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


def test_valid_batch_is_stored_and_readable(catalog: ApiTenant) -> None:
    batch = [
        event("u1", "view", "i1", ts=NOW - timedelta(hours=3)),
        event("u1", "rating", "i2", value=4.5, ts=NOW - timedelta(hours=2)),
        event("u1", "search", None, text="space opera", ts=NOW - timedelta(hours=1)),
        event("u1", "declared", None, text="I like jazz and hiking", event_id="decl-1"),
    ]
    r = catalog.post("/v1/events", json={"events": batch})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 4 and body["duplicates"] == 0
    assert [e["status"] for e in body["events"]] == ["created"] * 4
    assert body["events"][3]["event_id"] == "decl-1"

    events = stored(catalog, "u1")
    assert [e["type"] for e in events] == ["declared", "search", "rating", "view"]  # newest first
    assert events[2]["value"] == 4.5 and events[2]["item_id"] == "i2"
    assert events[1]["text"] == "space opera"


# (field changes, field reported, code reported)
INVALID = [
    ({"type": "teleport"}, "type", "literal_error"),
    ({"user_id": ""}, "user_id", "string_pattern_mismatch"),
    ({"user_id": "has space"}, "user_id", "string_pattern_mismatch"),
    ({"user_id": "x" * 129}, "user_id", "string_pattern_mismatch"),
    ({"ts": "2026-01-01T00:00:00"}, "ts", "timezone_aware"),
    ({"ts": "yesterday"}, "ts", "datetime_from_date_parsing"),
    ({"ts": 1700000000}, "ts", "value_error"),
    ({"ts": iso(NOW + timedelta(days=1))}, "ts", "in_future"),
    ({"ts": "1969-07-20T20:17:00Z"}, "ts", "too_old"),
    ({"item_id": "nope"}, "item_id", "unknown_item"),
    ({"item_id": None}, "item_id", "missing"),
    ({"type": "rating", "value": 7}, "value", "out_of_range"),
    ({"type": "rating", "value": -1}, "value", "out_of_range"),
    ({"type": "rating"}, "value", "missing"),
    ({"value": "lots"}, "value", "float_parsing"),
    ({"value": 1e12}, "value", "out_of_range"),
    ({"type": "post", "item_id": None}, "text", "missing"),
    ({"type": "search", "item_id": None, "text": "   "}, "text", "string_too_short"),
    ({"text": "x" * 4001}, "text", "string_too_long"),
    ({"colour": "red"}, "colour", "extra_forbidden"),
    ({"recommendation_id": "../etc"}, "recommendation_id", "string_pattern_mismatch"),
]


@pytest.mark.parametrize(("change", "field", "code"), INVALID)
def test_each_bad_record_is_named_and_nothing_is_written(
    catalog: ApiTenant, change: dict[str, Any], field: str, code: str
) -> None:
    good = event("u1", "view", "i1")
    bad = {**event("u1", "view", "i2"), **change}
    bad = {k: v for k, v in bad.items() if v is not None}
    r = catalog.post("/v1/events", json={"events": [good, bad]})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert {"index": 1, "field": field, "code": code} in [
        {k: d.get(k) for k in ("index", "field", "code")} for d in error["details"]
    ], error["details"]
    assert all(d["index"] == 1 for d in error["details"])
    assert stored(catalog, "u1") == []


def test_every_bad_record_is_listed_in_one_answer(catalog: ApiTenant) -> None:
    batch = [
        event("u1", "view", "i1"),
        event("u1", "view", "ghost"),
        {"user_id": "u1", "type": "view"},
        event("u1", "rating", "i2", value=9),
        "not an object",
    ]
    r = catalog.post("/v1/events", json={"events": batch})
    assert r.status_code == 422
    details = r.json()["error"]["details"]
    assert {(d["index"], d["field"]) for d in details} >= {
        (1, "item_id"), (2, "ts"), (3, "value"), (4, None)
    }
    assert 0 not in {d["index"] for d in details}


def test_resent_events_are_duplicates_not_errors(catalog: ApiTenant) -> None:
    batch = [event("u1", "view", "i1"), event("u1", "click", "i2", event_id="e-2")]
    first = catalog.post("/v1/events", json={"events": batch}).json()
    again = catalog.post("/v1/events", json={"events": batch})
    assert again.status_code == 200
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 2
    assert [e["event_id"] for e in again.json()["events"]] == [
        e["event_id"] for e in first["events"]
    ]
    assert len(stored(catalog, "u1")) == 2


def test_derived_ids_are_deterministic_and_zone_independent(catalog: ApiTenant) -> None:
    utc = event("u1", "view", "i1", ts=NOW - timedelta(hours=1))
    shifted = dict(utc, ts=(NOW - timedelta(hours=1)).astimezone().isoformat())
    shifted["ts"] = shifted["ts"].replace("+00:00", "Z")
    a = catalog.post("/v1/events", json={"events": [utc]}).json()["events"][0]
    b = catalog.post("/v1/events", json={"events": [shifted]}).json()["events"][0]
    assert a["event_id"] == b["event_id"] and a["event_id"].startswith("ev_")
    assert b["status"] == "duplicate"


def test_same_id_new_content_is_a_conflict_and_writes_nothing(catalog: ApiTenant) -> None:
    assert catalog.post("/v1/events", json={"events": [
        event("u1", "view", "i1", event_id="e-1")]}).status_code == 200
    r = catalog.post("/v1/events", json={"events": [
        event("u1", "view", "i3", event_id="e-new"),
        event("u1", "view", "i2", event_id="e-1"),
    ]})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "event_conflict"
    assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [
        (1, "event_id", "event_conflict")
    ]
    ids = {e["event_id"] for e in stored(catalog, "u1")}
    assert ids == {"e-1"}
    assert stored(catalog, "u1")[0]["item_id"] == "i1"  # the stored event was not changed


def test_exact_duplicates_in_one_batch_collapse(catalog: ApiTenant) -> None:
    same = event("u1", "like", "i1")
    r = catalog.post("/v1/events", json={"events": [same, same, event("u1", "view", "i2"), same]})
    body = r.json()
    assert r.status_code == 200
    assert body["accepted"] == 2 and body["duplicates"] == 2
    assert [e["status"] for e in body["events"]] == ["created", "duplicate", "created", "duplicate"]
    assert len(stored(catalog, "u1")) == 2


def test_same_id_twice_in_one_batch_with_different_content(catalog: ApiTenant) -> None:
    r = catalog.post("/v1/events", json={"events": [
        event("u1", "view", "i1", event_id="dup"), event("u1", "view", "i2", event_id="dup")]})
    assert r.status_code == 409
    assert r.json()["error"]["details"][0]["index"] == 1
    assert stored(catalog, "u1") == []


def test_batch_and_body_limits(catalog: ApiTenant) -> None:
    limit = catalog.client.app.state.container.settings.max_batch_events  # type: ignore[attr-defined]
    r = catalog.post("/v1/events", json={"events": [event("u1")] * (limit + 1)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"

    huge = b'{"events": [' + b" " * (9 * 1024 * 1024) + b"]}"
    r = catalog.post("/v1/events", content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunked() -> Any:
        yield b'{"events": ['
        for _ in range(10):
            yield b" " * (1024 * 1024)
        yield b"]}"

    r = catalog.post("/v1/events", content=chunked(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert stored(catalog, "u1") == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[]", 422, "validation_error"),
        (b'{"events": []}', 422, "validation_error"),
        (b'{"events": {}}', 422, "validation_error"),
        (b'{"events": [], "extra": 1}', 422, "validation_error"),
        (b"\xff\xfe", 400, "invalid_json"),
    ],
)
def test_malformed_bodies_get_clear_errors(
    catalog: ApiTenant, body: bytes, status: int, code: str
) -> None:
    r = catalog.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_users_become_stale_on_new_events(catalog: ApiTenant) -> None:
    from service.users.models import User

    catalog.post("/v1/events", json={"events": [
        event("u1", "view", "i1", ts=NOW - timedelta(hours=2)),
        event("u1", "view", "i2", ts=NOW - timedelta(hours=1)),
    ]})
    with catalog.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        user = session.query(User).filter_by(user_id="u1").one()
        assert user.stale and user.events_since_refresh == 2
    catalog.post("/v1/events", json={"events": [event("u1", "view", "i3")]})
    with catalog.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        assert session.query(User).filter_by(user_id="u1").one().events_since_refresh == 3


def test_events_page_newest_first(catalog: ApiTenant) -> None:
    batch = [event("u1", "view", "i1", ts=NOW - timedelta(minutes=m)) for m in range(1, 26)]
    batch += [event("u1", "click", "i2", ts=NOW - timedelta(minutes=10))]  # a tie in ts
    catalog.post("/v1/events", json={"events": batch})
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = catalog.get("/v1/users/u1/events", params=params).json()
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 26 and len({e["event_id"] for e in seen}) == 26
    times = [e["ts"] for e in seen]
    assert times == sorted(times, reverse=True)

    r = catalog.get("/v1/users/u1/events", params={"cursor": "garbage!!"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "invalid_cursor"
    assert catalog.get("/v1/users/nobody/events").status_code == 404
