"""Concurrent ingest of overlapping batches: no error, no event twice, no event lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.utils.api import ApiTenant, event, item


def test_overlapping_concurrent_batches(tenant: ApiTenant) -> None:
    tenant.put("/v1/items", json={"items": [item(f"i{n}") for n in range(5)]})
    batches = [
        [event(f"u{(b + n) % 7}", "view", f"i{n % 5}", event_id=f"e{(b * 7 + n) % 40}",
               text=None) for n in range(20)]
        for b in range(8)
    ]
    # Give each event id exactly one content so overlaps are duplicates, not conflicts.
    content = {}
    for batch in batches:
        for e in batch:
            content.setdefault(e["event_id"], e)
    batches = [[content[e["event_id"]] for e in batch] for batch in batches]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda b: tenant.post("/v1/events", json={"events": b}), batches))
    assert [a.status_code for a in answers] == [200] * len(batches), [a.text for a in answers]
    assert sum(a.json()["accepted"] for a in answers) == len(content)

    stored = set()
    for u in {e["user_id"] for e in content.values()}:
        stored |= {e["event_id"] for e in tenant.get(f"/v1/users/{u}/events",
                                                     params={"limit": 500}).json()["events"]}
    assert stored == set(content)
