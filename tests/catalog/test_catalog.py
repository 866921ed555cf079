"""Catalog upserts through HTTP."""

from __future__ import annotations

import pytest

from tests.utils.api import ApiTenant, item


def test_upsert_creates_updates_and_skips_unchanged(tenant: ApiTenant) -> None:
    first = tenant.put("/v1/items", json={"items": [
        item("m1", title="Alien", description="Space horror", tags=["sci-fi", "horror"],
             category="movie", attributes={"year": 1979}),
        item("m2", title="Heat"),
    ]})
    assert first.status_code == 200, first.text
    assert first.json() == {"created": 2, "updated": 0, "unchanged": 0, "indexed": 2,
                            "index_pending": 0}

    second = tenant.put("/v1/items", json={"items": [
        item("m1", title="Alien", description="Space horror", tags=["sci-fi", "horror"],
             category="movie", attributes={"year": 1979}),
        item("m2", title="Heat (1995)"),
        item("m3", title="Ran"),
    ]})
    # Only the changed and the new item are embedded again.
    assert second.json() == {"created": 1, "updated": 1, "unchanged": 1, "indexed": 2,
                             "index_pending": 0}
    # Attributes are not part of the embedded text: an update, no re-embedding.
    third = tenant.put("/v1/items", json={"items": [item("m3", title="Ran",
                                                         attributes={"year": 1985})]})
    assert third.json() == {"created": 0, "updated": 1, "unchanged": 0, "indexed": 0,
                            "index_pending": 0}

    got = tenant.get("/v1/items/m1").json()
    assert got["title"] == "Alien" and got["tags"] == ["sci-fi", "horror"]
    assert got["attributes"] == {"year": 1979} and got["category"] == "movie"
    assert tenant.get("/v1/items/m2").json()["title"] == "Heat (1995)"


@pytest.mark.parametrize(
    ("record", "field", "code"),
    [
        ({"item_id": "x"}, "title", "missing"),
        ({"item_id": "x", "title": "  "}, "title", "string_too_short"),
        ({"item_id": "x", "title": "t" * 501}, "title", "string_too_long"),
        ({"item_id": "bad id", "title": "t"}, "item_id", "string_pattern_mismatch"),
        ({"item_id": "x", "title": "t", "tags": ["a"] * 65}, "tags", "too_long"),
        ({"item_id": "x", "title": "t", "tags": "sci-fi"}, "tags", "list_type"),
        ({"item_id": "x", "title": "t", "attributes": {"k": "v" * 20000}}, "attributes",
         "value_error"),
        ({"item_id": "x", "title": "t", "price": 3}, "price", "extra_forbidden"),
    ],
)
def test_bad_items_write_nothing(tenant: ApiTenant, record: dict[str, object], field: str,
                                 code: str) -> None:
    r = tenant.put("/v1/items", json={"items": [item("ok"), record]})
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    found = [(d["index"], d["field"], d["code"]) for d in details]
    assert (1, field, code) in found, details
    assert tenant.get("/v1/items/ok").status_code == 404


def test_same_item_twice_in_a_batch(tenant: ApiTenant) -> None:
    same = tenant.put("/v1/items", json={"items": [item("a"), item("a")]})
    assert same.status_code == 200 and same.json()["created"] == 1
    differ = tenant.put("/v1/items", json={"items": [item("b", title="one"),
                                                      item("b", title="two")]})
    assert differ.status_code == 422
    assert differ.json()["error"]["details"][0]["code"] == "duplicate_item_id"
    assert tenant.get("/v1/items/b").status_code == 404


def test_unknown_item_is_404_with_code(tenant: ApiTenant) -> None:
    r = tenant.get("/v1/items/missing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "item_not_found"


def test_tag_counts_follow_the_catalog_per_tenant(tenant: ApiTenant,
                                                  other_tenant: ApiTenant) -> None:
    """Grouping's tag document frequencies: one tenant's catalog only, counted again
    when the catalog changes."""
    from sqlalchemy import select

    from service.catalog.service import tag_counts
    from service.tenants.models import Tenant

    assert tenant.put("/v1/items", json={"items": [
        item("m1", tags=["Horror", "Drama"], category="Movie"),
        item("m2", tags=["drama"], attributes={"genres": ["War"]}),
    ]}).status_code == 200
    assert other_tenant.put("/v1/items", json={"items": [
        item("x1", tags=["horror"])]}).status_code == 200
    sessions = tenant.client.app.state.container.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == tenant.name))
        first = tag_counts(session, tenant_id)
        assert first.items == 2
        assert first.document_frequency == {"horror": 1, "drama": 2, "war": 1,
                                            "category:movie": 1}
        assert tag_counts(session, tenant_id) is first  # unchanged catalog: kept
    assert tenant.put("/v1/items", json={"items": [
        item("m3", tags=["horror"])]}).status_code == 200
    with sessions() as session:
        again = tag_counts(session, tenant_id)
        assert again.items == 3 and again.document_frequency["horror"] == 2
