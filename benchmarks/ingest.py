"""Ingest throughput: the real app in process, SQLite in a temp folder, batches of 1,000.

Prints progress lines, then one JSON object on the last line: {"events_per_s": ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from service.tenants.service import create_tenant


def make_batches(n_batches: int, batch_size: int, n_users: int, n_items: int,
                 seed: int) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=30)
    types = ["view", "view", "view", "click", "like", "rating", "purchase", "skip"]
    batches = []
    for b in range(n_batches):
        batch = []
        for n in range(batch_size):
            kind = rng.choice(types)
            ev: dict[str, Any] = {
                "user_id": f"u{rng.randrange(n_users)}",
                "type": kind,
                "item_id": f"i{rng.randrange(n_items)}",
                "ts": (start + timedelta(seconds=b * batch_size + n)).isoformat(),
            }
            if kind == "rating":
                ev["value"] = rng.choice([1, 2, 3, 4, 5])
            if n % 2:
                ev["event_id"] = f"b{b}-e{n}"
            batch.append(ev)
        batches.append(batch)
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp)))
        with TestClient(app) as client:
            with app.state.container.sessions() as session:
                _, key = create_tenant(session, "bench")
            auth = {"Authorization": f"Bearer {key}"}
            for lo in range(0, args.items, 1000):
                items = [{"item_id": f"i{i}", "title": f"Item {i}", "tags": ["t"]}
                         for i in range(lo, min(lo + 1000, args.items))]
                client.put("/v1/items", headers=auth, json={"items": items}).raise_for_status()
            batches = make_batches(args.batches, args.batch_size, args.users, args.items,
                                   args.seed)
            bodies = [json.dumps({"events": b}).encode() for b in batches]
            headers = {**auth, "Content-Type": "application/json"}
            # One warm-up batch (first-request costs), not counted.
            client.post("/v1/events", headers=headers, content=bodies[0]).raise_for_status()

            latencies = []
            started = time.perf_counter()
            for body in bodies[1:]:
                t0 = time.perf_counter()
                r = client.post("/v1/events", headers=headers, content=body)
                r.raise_for_status()
                assert r.json()["accepted"] == args.batch_size, r.text[:300]
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started

    events = args.batch_size * (len(bodies) - 1)
    latencies.sort()
    p50_ms = latencies[len(latencies) // 2] * 1e3
    print(f"{events} events in {elapsed:.2f} s; batch p50 {p50_ms:.1f} ms")
    print(json.dumps({
        "events_per_s": round(events / elapsed),
        "batch_size": args.batch_size,
        "batches": len(latencies),
        "batch_p50_ms": round(p50_ms, 1),
        "database": "sqlite",
    }))


if __name__ == "__main__":
    main()
