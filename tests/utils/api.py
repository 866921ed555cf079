"""Tenants with their keys, apps to call, and factories for the rows the API takes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from service.tenants.service import create_tenant


@dataclass
class ApiTenant:
    """A tenant with its key, and a client that always sends that key."""

    name: str
    key: str
    client: TestClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def request(self, method: str, url: str, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kw)

    def get(self, url: str, **kw: Any) -> Any:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> Any:
        return self.request("PUT", url, **kw)

    def delete(self, url: str, **kw: Any) -> Any:
        return self.request("DELETE", url, **kw)


def make_tenant(client: TestClient, name: str) -> ApiTenant:
    with client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        _, key = create_tenant(session, name)
    return ApiTenant(name=name, key=key, client=client)


def app_client(settings: Settings, llm: Any = None, **kw: Any) -> TestClient:
    """A TestClient (use it as a context manager) for an app with this LLM runtime."""
    return TestClient(create_app(settings, llm=llm, **kw))


def iso(ts: datetime) -> str:
    return ts.isoformat()


NOW = datetime.now(UTC).replace(microsecond=0)


def item(item_id: str, **kw: Any) -> dict[str, Any]:
    return {"item_id": item_id, "title": kw.pop("title", f"Title of {item_id}"), **kw}


def event(
    user_id: str, type_: str = "view", item_id: str | None = "i1", **kw: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": user_id,
        "type": type_,
        "ts": iso(kw.pop("ts", NOW - timedelta(minutes=5))),
    }
    if item_id is not None:
        body["item_id"] = item_id
    body.update(kw)
    return body


def activity_for(t: ApiTenant, user_id: str = "u1") -> list[dict[str, Any]]:
    """A small, coherent history: a sci-fi fan who dislikes romance."""
    t.put("/v1/items", json={"items": [
        item("m1", title="Alien", description="Space horror aboard a cargo ship",
             tags=["sci-fi", "horror"], category="movie"),
        item("m2", title="Blade Runner", description="A detective hunts replicants",
             tags=["sci-fi", "noir"], category="movie"),
        item("m3", title="The Martian", description="An astronaut stranded on Mars",
             tags=["sci-fi", "space"], category="movie"),
        item("m4", title="The Notebook", description="A romance across decades",
             tags=["romance", "drama"], category="movie"),
    ]})
    events = [
        event(user_id, "rating", "m1", value=5, ts=NOW - timedelta(days=3), event_id="r1"),
        event(user_id, "rating", "m2", value=4.5, ts=NOW - timedelta(days=2), event_id="r2"),
        event(user_id, "like", "m3", ts=NOW - timedelta(days=1), event_id="l3"),
        event(user_id, "rating", "m4", value=1, ts=NOW - timedelta(hours=20), event_id="r4"),
        event(user_id, "search", None, text="space exploration films",
              ts=NOW - timedelta(hours=2), event_id="s5"),
    ]
    r = t.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    return events
