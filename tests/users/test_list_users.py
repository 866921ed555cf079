"""GET /v1/users: the tenant's users by id, paged with a cursor, searched by prefix."""

from __future__ import annotations

from typing import Any

import pytest

from tests.utils.api import ApiTenant, event, item

IDS = ["ann", "ann_2", "annA", "anna", "ANN-9", "bob", "carl.x"]


def add_users(t: ApiTenant, ids: list[str]) -> None:
    t.put("/v1/items", json={"items": [item("i1")]})
    r = t.post("/v1/events", json={"events": [event(u, "view", "i1") for u in ids]})
    assert r.status_code == 200 and r.json()["accepted"] == len(ids), r.text


def all_pages(t: ApiTenant, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        r = t.get("/v1/users", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        pages.append([u["user_id"] for u in r.json()["users"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages


def test_pages_walk_every_user_once_in_id_order(tenant: ApiTenant,
                                                other_tenant: ApiTenant) -> None:
    add_users(tenant, IDS)
    add_users(other_tenant, ["zed", "ann-other"])
    pages = all_pages(tenant, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]  # by id, in the database's collation
    flat = [u for p in pages for u in p]
    assert sorted(flat) == sorted(IDS) and len(set(flat)) == len(flat)
    # Another tenant's users are never listed.
    assert "zed" not in flat and "ann-other" not in flat


def test_a_user_shows_their_refresh_state(tenant: ApiTenant) -> None:
    add_users(tenant, ["u1"])
    [user] = tenant.get("/v1/users").json()["users"]
    assert user["user_id"] == "u1" and user["stale"] is True
    assert user["events_since_refresh"] == 1
    assert user["profile_version"] == 0 and user["refreshed_at"] is None


def test_prefix_search_is_exact_and_case_sensitive(tenant: ApiTenant) -> None:
    add_users(tenant, ["ann", "ann_2", "annA", "anna", "ANN-9", "bob", "annXb"])
    found = [u for p in all_pages(tenant, prefix="ann", limit=2) for u in p]
    assert sorted(found) == sorted(["ann", "ann_2", "annA", "anna", "annXb"])
    assert len(found) == len(set(found))
    # `_` is a character of ids, not a wildcard; nor does case fold.
    assert all_pages(tenant, prefix="ann_") == [["ann_2"]]
    assert all_pages(tenant, prefix="ANN") == [["ANN-9"]]
    assert all_pages(tenant, prefix="nobody") == [[]]
    assert sorted(u for p in all_pages(tenant, prefix="") for u in p) == sorted(
        ["ann", "ann_2", "annA", "anna", "ANN-9", "bob", "annXb"])


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"limit": "x"}, "limit"),
    ({"prefix": "a%"}, "prefix"), ({"prefix": "a b"}, "prefix"), ({"prefix": "x" * 129}, "prefix"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": "dXw"}, "cursor"),
])
def test_bad_parameters_are_a_422_naming_the_field(tenant: ApiTenant, params: dict[str, Any],
                                                    field: str) -> None:
    r = tenant.get("/v1/users", params=params)
    assert r.status_code == 422, r.text
    body = r.json()["error"]
    assert body["code"] == "validation_error"
    assert [d["field"] for d in body["details"]] == [field], body


def test_listing_needs_a_key(tenant: ApiTenant) -> None:
    r = tenant.client.get("/v1/users")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
