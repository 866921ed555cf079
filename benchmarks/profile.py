"""Profile reads and item indexing: the real app in process (SQLite, real MiniLM
embeddings, Chroma in a temp folder).

1. Item indexing: the MovieLens catalog (title, genres, tags) through `PUT /v1/items`
   in batches of 1,000; every item is embedded and written to Chroma.
2. `GET /v1/users/{id}/profile`: a stored profile with `--facets` facets, each backed
   by `--evidence` events, read `--reads` times; strengths are decayed per request.

Prints progress lines, then one JSON object on the last line:
{"p50_ms": ..., "p99_ms": ..., "items_per_s": ...}.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file's name shadows the standard library's `profile` (which torch imports via
# cProfile) when Python puts the script's folder first on the path: take it off.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import csv
import json
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.core.config import Settings
from service.main import create_app
from service.profiles.merge import NewFacet
from service.profiles.store import RefreshInput, commit_merge
from service.tenants.service import create_tenant
from service.users.models import User

MOVIELENS = Path(__file__).resolve().parents[1] / "evals" / "data" / "ml-latest-small"


def movielens_items(limit: int) -> list[dict[str, Any]]:
    tags: dict[str, list[str]] = defaultdict(list)
    with (MOVIELENS / "tags.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["tag"].lower() not in tags[row["movieId"]]:
                tags[row["movieId"]].append(row["tag"].lower())
    items = []
    with (MOVIELENS / "movies.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            genres = [g for g in row["genres"].split("|") if g != "(no genres listed)"]
            items.append({"item_id": f"m{row['movieId']}", "title": row["title"][:500],
                          "category": genres[0] if genres else None,
                          "tags": (genres + tags[row["movieId"]])[:12]})
    return items[:limit]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of the values, as numpy computes it (linear interpolation)."""
    return float(np.quantile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--facets", type=int, default=12)
    parser.add_argument("--evidence", type=int, default=20)
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), refresh_worker=False, llm_backend="fake")
        app = create_app(settings)
        with TestClient(app) as client:
            with app.state.container.sessions() as session:
                _, key = create_tenant(session, "bench")
            auth = {"Authorization": f"Bearer {key}"}
            items = movielens_items(args.items)
            app.state.container.embedder.embed(["warm-up"])  # model load is not indexing
            started = time.perf_counter()
            for lo in range(0, len(items), 1000):
                r = client.put("/v1/items", headers=auth, json={"items": items[lo:lo + 1000]})
                r.raise_for_status()
                assert r.json()["index_pending"] == 0, r.text
            index_s = time.perf_counter() - started
            print(f"indexed {len(items)} items in {index_s:.1f} s")

            # A user with history, and a profile written by the real merge path.
            now = datetime.now(UTC)
            n_events = args.facets * args.evidence
            events = [{"event_id": f"e{n}", "user_id": "u1", "type": "like",
                       "item_id": items[n % len(items)]["item_id"],
                       "ts": (now - timedelta(hours=n_events - n)).isoformat()}
                      for n in range(n_events)]
            for lo in range(0, len(events), 1000):
                client.post("/v1/events", headers=auth,
                            json={"events": events[lo:lo + 1000]}).raise_for_status()
            labels = [f"Interest number {n} in {items[n]['title']}" for n in range(args.facets)]
            vectors = app.state.container.embedder.embed(labels)
            new = [NewFacet(label=label[:60], description=f"Keeps coming back to {label}.",
                            strength=0.9, polarity="like",
                            evidence=tuple(f"e{f * args.evidence + k}"
                                           for k in range(args.evidence)),
                            embedding=tuple(vec))
                   for f, (label, vec) in enumerate(zip(labels, vectors, strict=True))]
            with app.state.container.sessions() as session:
                user = session.scalars(select(User).where(User.user_id == "u1")).one()
                commit_merge(session, user, app.state.container.profiles.rules, now, "refresh",
                             RefreshInput(new=new))

            for _ in range(20):  # warm-up
                client.get("/v1/users/u1/profile", headers=auth).raise_for_status()
            latencies = []
            for _ in range(args.reads):
                t0 = time.perf_counter()
                r = client.get("/v1/users/u1/profile", headers=auth)
                latencies.append((time.perf_counter() - t0) * 1e3)
                r.raise_for_status()
            body = r.json()
            assert len(body["facets"]) == args.facets
            assert all(len(f["evidence"]) == args.evidence for f in body["facets"])

    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"GET profile x{args.reads}: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"({args.facets} facets x {args.evidence} evidence events)")
    print(json.dumps({
        "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "facets": args.facets,
        "evidence_per_facet": args.evidence, "items_per_s": round(len(items) / index_s, 1),
        "items": len(items), "database": "sqlite", "transport": "in-process ASGI",
    }))


if __name__ == "__main__":
    main()
