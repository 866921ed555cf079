"""Two API replicas and two workers on PostgreSQL, under a steady mix of event batches,
profile reads and recommendations, while their dependencies fail one after another:

- the Chroma server is killed (SIGKILL) and started again on its folder and port; while
  it is down, items are written (five new, five with a new title);
- the model server answers 500, then takes 2 s an answer;
- a worker is killed with SIGKILL while it holds a refresh job, the model mid-answer
  (the slow phase), and a replacement is started;
- every PostgreSQL connection of the service is terminated (`pg_terminate_backend`);
- an API replica is killed with SIGKILL and started again on its port (the driver sends
  an event batch that got no answer to the other replica: events are idempotent by id).

Then, the faults over and the workers given a bounded time to catch up, it reconciles:
every accepted event stored exactly once; no 5xx but 503, and 503s or unanswered
requests only during an outage; no user left stale; no job left leased past its lease;
every profile version readable and each profile at its newest version, having read all
of its user's events; every item's vector in Chroma at its current text, and no vector
without an item. (Facet vectors live in the database, written in the same transaction
as their profile version, so a half-written version cannot leave one behind.)

The load is small (three driver threads, ~40 s) so the test stays bounded in
`make test`; benchmarks/load.py runs the same stack longer, without faults.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from sqlalchemy import Engine, create_engine, text

from service.profiles.schemas import VersionFacet
from tests.load.stack import LoadDriver, Stack, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# How long after an outage ends a 503 may still come back (a request that started
# during it, bounded by the driver's timeout).
ITEMS = 40  # in the catalog before the load starts
GRACE_SECONDS = 12.0
CATCH_UP_SECONDS = 45.0


@pytest.fixture
def stack(tmp_path: Path, postgres_url: str) -> Iterator[Stack]:
    with running_stack(tmp_path / "stack", postgres_url, items=ITEMS) as running:
        yield running


class Outages:
    """When each fault began and ended (time.monotonic())."""

    def __init__(self) -> None:
        self.windows: dict[str, tuple[float, float]] = {}

    def run(self, name: str, fault: Callable[[], None]) -> None:
        began = time.monotonic()
        fault()
        self.windows[name] = (began, time.monotonic())

    def during(self, at: float) -> bool:
        return any(began <= at <= ended + GRACE_SECONDS
                   for began, ended in self.windows.values())


def kill_chroma(stack: Stack, writes: dict[str, Any]) -> None:
    """Kill Chroma, write items while it is down (five new, five retitled), restart it."""
    stack.chroma.kill()
    time.sleep(1)
    writes["items_during_outage"] = [stack.put_items(5, start=ITEMS, api=1).status_code,
                                     stack.put_items(5, edition=" (restored)").status_code]
    time.sleep(2)
    stack.chroma.start()


def kill_an_api(stack: Stack) -> None:
    """SIGKILL the second API replica mid-traffic and start a new one on its port."""
    stack.restart_api(1)


def failing_model(stack: Stack) -> None:
    stack.model.set_mode("fail")
    time.sleep(3)
    stack.model.set_mode("ok")


def slow_model_and_kill_a_worker(stack: Stack, engine: Engine,
                                 killed: dict[str, Any]) -> None:
    """While answers take 2 s, SIGKILL the first worker seen holding a refresh job with
    a model call in flight; a replacement starts at once."""
    stack.model.set_mode("slow")
    began = time.monotonic()
    while not killed and time.monotonic() - began < 30:
        with engine.connect() as conn:
            held = conn.execute(text(
                "SELECT id, lease_owner FROM jobs WHERE state = 'leased' "
                "AND kind = 'refresh'")).all()
        pids = stack.worker_pids()
        for job_id, owner in held:
            pid = int(owner.split(":")[1])
            if pid in pids and stack.model.chat_in_flight > 0:
                os.kill(pid, signal.SIGKILL)
                pids[pid].proc.wait(timeout=10)
                stack.workers.remove(pids[pid])
                stack.retired.append(pids[pid])
                killed.update(job_id=job_id, pid=pid)
                stack.start_worker()
                break
        time.sleep(0.05)
    time.sleep(max(0.0, 6 - (time.monotonic() - began)))
    stack.model.set_mode("ok")


def terminate_connections(engine: Engine) -> None:
    for _ in range(3):
        with engine.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            conn.commit()
        time.sleep(1)


def wait_for_catch_up(engine: Engine, seconds: float) -> float:
    """Seconds until no user is stale and no job is open (or the bound ran out)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        with engine.connect() as conn:
            stale = conn.scalar(text(
                "SELECT count(*) FROM users WHERE stale OR events_since_refresh > 0"))
            open_jobs = conn.scalar(text(
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'leased')"))
        if stale == 0 and open_jobs == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - began


def item_vectors(stack: Stack, engine: Engine) -> dict[str, Any]:
    """Items whose vector is missing, stale or extra in Chroma, after recovery."""
    with engine.connect() as conn:
        tenant_id = conn.scalar(text("SELECT id FROM tenants WHERE name = 'load'"))
        items: dict[str, bool] = dict(conn.execute(text(
            "SELECT item_id, indexed_hash IS NOT NULL AND indexed_hash = text_hash "
            "FROM items WHERE tenant_id = :t"), {"t": tenant_id}).all())
    client = chromadb.HttpClient(host="127.0.0.1", port=stack.chroma.port)
    stored = set(client.get_collection(f"tenant{tenant_id}-items").get(include=[])["ids"])
    return {"items": len(items), "item_vectors": len(stored),
            "items_unindexed": sorted(i for i, done in items.items() if not done),
            "items_without_vector": sorted(items.keys() - stored),
            "vectors_without_item": sorted(stored - items.keys())}


def reconcile(engine: Engine, driver: LoadDriver) -> dict[str, Any]:
    with engine.connect() as conn:
        stored: dict[str, int] = dict(conn.execute(text(
            "SELECT event_id, count(*) FROM events GROUP BY event_id")).all())
        stale = conn.execute(text(
            "SELECT user_id, events_since_refresh FROM users "
            "WHERE stale OR events_since_refresh > 0 ORDER BY user_id")).all()
        expired = conn.execute(text(
            "SELECT id, lease_owner FROM jobs WHERE state = 'leased' "
            "AND lease_expires_at < now()")).all()
        jobs: dict[str, int] = dict(conn.execute(text(
            "SELECT state || ':' || coalesce(outcome, '-'), count(*) FROM jobs "
            "WHERE kind = 'refresh' GROUP BY 1")).all())
        behind = conn.execute(text(
            "SELECT u.user_id, p.version, (SELECT max(v.version) FROM profile_versions v "
            "WHERE v.user_pk = u.id), p.read_through_event, (SELECT max(e.id) FROM events e "
            "WHERE e.user_pk = u.id) FROM users u LEFT JOIN profiles p ON p.user_pk = u.id"
        )).all()
        versions = conn.execute(text(
            "SELECT user_pk, version, facets FROM profile_versions")).all()
    unreadable = []
    for user_pk, version, facets in versions:
        try:
            parsed = [VersionFacet.model_validate(f) for f in facets]
            assert parsed or version >= 1
        except Exception as exc:  # reported with the row below
            unreadable.append((user_pk, version, f"{type(exc).__name__}: {exc}"))
    accepted = driver.accepted
    statuses = [o.status for o in driver.outcomes]
    return {
        "events_sent": len(driver.sent),
        "events_accepted": len(accepted),
        "events_unconfirmed": len(driver.unconfirmed),
        "events_stored": len(stored),
        "stored_of_accepted": sum(1 for e in accepted if stored.get(e, 0) >= 1),
        "duplicates": sum(count - 1 for count in stored.values() if count > 1),
        "lost": sorted(accepted - stored.keys()),
        "requests": len(statuses),
        "status_codes": driver.status_counts(),
        "5xx_by_code": {str(s): statuses.count(s) for s in sorted(set(statuses)) if s >= 500},
        "refresh_jobs": jobs,
        "profile_versions": len(versions),
        "stale_users": [tuple(row) for row in stale],
        "expired_leases": [tuple(row) for row in expired],
        "profiles_behind": [tuple(row) for row in behind
                            if row[1] is None or row[1] != row[2] or row[3] < row[4]],
        "unreadable_versions": unreadable,
    }


def test_load_with_faults_loses_nothing_and_recovers(stack: Stack) -> None:
    engine = create_engine(stack.database_url, pool_pre_ping=True)
    outages = Outages()
    killed: dict[str, Any] = {}
    writes: dict[str, Any] = {}
    driver = LoadDriver(stack)
    started = time.monotonic()
    driver.start(threads=3)
    try:
        time.sleep(3)
        outages.run("chroma killed", lambda: kill_chroma(stack, writes))
        time.sleep(2)
        outages.run("model failing", lambda: failing_model(stack))
        time.sleep(1)
        outages.run("model slow, worker killed",
                    lambda: slow_model_and_kill_a_worker(stack, engine, killed))
        time.sleep(2)
        outages.run("connections terminated", lambda: terminate_connections(engine))
        time.sleep(2)
        outages.run("api killed", lambda: kill_an_api(stack))
        time.sleep(3)
    finally:
        driver.stop()
    driven = time.monotonic() - started
    caught_up = wait_for_catch_up(engine, CATCH_UP_SECONDS)
    counts = reconcile(engine, driver)
    counts.update(writes, **item_vectors(stack, engine))
    late_503 = sum(1 for o in driver.outcomes if o.status == 503 and not outages.during(o.at))
    # A request without an answer: the API replica killed under it, or (seen once on
    # profile reads while PostgreSQL connections were terminated) a connection closed by
    # the server. Tolerated during an outage only, and counted by kind in status_codes.
    late_no_answer = sum(1 for o in driver.outcomes
                         if o.status == 0 and not outages.during(o.at))
    counts.update(
        seconds_driven=round(driven, 1), seconds_to_catch_up=round(caught_up, 1),
        outages={name: round(end - began, 1) for name, (began, end) in outages.windows.items()},
        worker_killed=killed, model_answers=dict(stack.model.handler.answered),
        late_503=late_503, late_no_answer=late_no_answer)
    if killed:
        with engine.connect() as conn:
            counts["killed_job"] = conn.execute(text(
                "SELECT state, outcome, attempts FROM jobs WHERE id = :id"),
                {"id": killed["job_id"]}).one()._asdict()
    engine.dispose()
    report = json.dumps(counts, indent=1, default=str)
    print(f"\nreconciliation:\n{report}")
    why = f"{report}\n{stack.logs()}"

    assert counts["events_accepted"] > 0 and counts["events_stored"] > 0, why
    assert counts["lost"] == [] and counts["duplicates"] == 0, why
    assert counts["stored_of_accepted"] == counts["events_accepted"], why
    assert set(counts["5xx_by_code"]) <= {"503"}, why
    assert late_503 == 0 and late_no_answer == 0, why
    assert counts["stale_users"] == [], why
    assert counts["expired_leases"] == [], why
    assert counts["profiles_behind"] == [] and counts["unreadable_versions"] == [], why
    assert counts["items_during_outage"] == [200, 200], why
    assert counts["items"] == ITEMS + 5 and counts["item_vectors"] == counts["items"], why
    assert counts["items_unindexed"] == counts["items_without_vector"] == \
        counts["vectors_without_item"] == [], why
    assert killed, f"no worker was caught holding a refresh job\n{why}"
    assert counts["killed_job"]["state"] == "done", why
