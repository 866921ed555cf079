"""Authentication and tenant isolation: another tenant's data is a 404, never a leak."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.utils.api import ApiTenant, event, item

ROUTES = [
    ("get", "/v1/items/i1"),
    ("put", "/v1/items"),
    ("post", "/v1/events"),
    ("get", "/v1/users/u1/events"),
    ("delete", "/v1/users/u1"),
]


@pytest.mark.parametrize(("method", "url"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer it_wrong"}, {"Authorization": "Basic abc"},
     {"Authorization": "Bearer"}],
)
def test_every_v1_route_needs_a_valid_key(
    client: TestClient, tenant: ApiTenant, method: str, url: str, headers: dict[str, str]
) -> None:
    r = client.request(method, url, headers=headers, json={"events": [], "items": []})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_tenants_never_see_each_other(tenant: ApiTenant, other_tenant: ApiTenant) -> None:
    assert tenant.put("/v1/items", json={"items": [item("i1", title="Acme thing")]}).is_success
    assert tenant.post("/v1/events", json={"events": [event("u1", "view", "i1", event_id="e1")]}
                       ).is_success

    # Reads: 404, not 403, so existence is not revealed.
    assert other_tenant.get("/v1/items/i1").status_code == 404
    assert other_tenant.get("/v1/users/u1/events").status_code == 404
    # Writes: the other tenant's catalog does not exist for it.
    r = other_tenant.post("/v1/events", json={"events": [event("u1", "view", "i1")]})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "unknown_item"
    # The same ids live independently per tenant.
    assert other_tenant.put("/v1/items", json={"items": [item("i1", title="Globex thing")]}
                            ).json()["created"] == 1
    r = other_tenant.post("/v1/events", json={"events": [event("u1", "view", "i1",
                                                                event_id="e1")]})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert tenant.get("/v1/items/i1").json()["title"] == "Acme thing"
    # Deletes: one tenant's delete leaves the other's user alone.
    assert other_tenant.delete("/v1/users/u1").status_code == 200
    assert other_tenant.delete("/v1/users/u1").status_code == 404
    events = tenant.get("/v1/users/u1/events").json()["events"]
    assert [e["event_id"] for e in events] == ["e1"]
