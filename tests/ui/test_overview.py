"""GET /v1/tenant (the inspector's first page) and the inspector's files themselves."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.core.db import utcnow
from service.summaries.models import SummaryRun
from service.users.models import User
from service.vectors.embeddings import Embedder
from tests.utils.api import NOW, ApiTenant, event, item


def add_run(t: ApiTenant, user_id: str, status: str, hours_ago: float) -> None:
    with t.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        user = session.scalars(select(User).where(User.user_id == user_id)).one()
        session.add(SummaryRun(
            tenant_id=user.tenant_id, user_pk=user.id, status=status, model="m",
            prompt_name="p", prompt_version="1", events_read=3,
            error_code=None if status == "ok" else "llm_unavailable",
            error=None if status == "ok" else "the model server is down",
            created_at=utcnow() - timedelta(hours=hours_ago)))
        session.commit()


def test_overview_counts_one_tenant_and_shows_its_queue_and_refreshes(
        tenant: ApiTenant, other_tenant: ApiTenant, embedder: Embedder) -> None:
    tenant.put("/v1/items", json={"items": [item("i1"), item("i2"), item("i3")]})
    busy = [event("u1", "view", "i1", ts=NOW - timedelta(minutes=n)) for n in range(25)]
    r = tenant.post("/v1/events", json={"events": [*busy, event("u2", "like", "i2")]})
    assert r.json()["accepted"] == 26, r.text
    other_tenant.put("/v1/items", json={"items": [item("x")]})
    other_tenant.post("/v1/events", json={"events": [event("v9", "view", "x")]})
    add_run(tenant, "u2", "failed", hours_ago=48)  # too old to count as a recent failure
    add_run(tenant, "u2", "ok", hours_ago=2)
    add_run(tenant, "u1", "failed", hours_ago=1)

    r = tenant.get("/v1/tenant")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tenant"] == "acme" and body["users"] == 2
    assert body["catalog_items"] == 3 and body["index_pending"] == 0
    models = body["models"]
    assert models["embedding_model"] == embedder.name  # the app's, whichever it is
    assert models["recommender_version"] is None and models["recommender_ranker"] is False
    assert (models["half_life_short_days"], models["half_life_long_days"]) == (7.0, 90.0)
    queue = body["refresh_queue"]
    assert queue["stale_users"] == 2 and queue["due_users"] == 1
    assert [(u["user_id"], u["events_since_refresh"], u["due"]) for u in queue["next"]] == [
        ("u1", 25, True), ("u2", 1, False)]
    assert [(run["user_id"], run["status"]) for run in body["recent_refreshes"]] == [
        ("u1", "failed"), ("u2", "ok"), ("u2", "failed")]
    assert body["recent_refreshes"][0]["error_code"] == "llm_unavailable"
    assert body["failures_24h"] == 1

    theirs = other_tenant.get("/v1/tenant").json()
    assert (theirs["tenant"], theirs["users"], theirs["catalog_items"]) == ("globex", 1, 1)
    assert theirs["recent_refreshes"] == [] and theirs["refresh_queue"]["stale_users"] == 1


def test_overview_needs_a_key(client: TestClient) -> None:
    r = client.get("/v1/tenant", headers={"Authorization": "Bearer it_nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_the_inspector_is_served_with_a_strict_policy(client: TestClient) -> None:
    r = client.get("/ui", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe" not in policy  # no inline script or eval
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<script src="app.js"' in page.text and "<script>" not in page.text
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"),
                       ("icon.svg", "image/svg+xml")):
        r = client.get(f"/ui/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
    # Nothing is fetched from elsewhere: every URL the page and script name is relative.
    # (The SVG namespace is a name, not a fetch.)
    text = (page.text + client.get("/ui/app.js").text).replace("http://www.w3.org/2000/svg", "")
    assert "http://" not in text and "https://" not in text
    r = client.get("/ui/../service/main.py")
    assert r.status_code == 404
    r = client.get("/ui/secrets.txt")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
