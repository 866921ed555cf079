"""Catalog indexing: the real app in process (SQLite, real MiniLM embeddings, Chroma in
a temp folder), the bundled MovieLens catalog as the demo loads it (title, genres, most
used tags), through `PUT /v1/items` in batches of 1,000: every item is stored, embedded
and written to Chroma before the request returns.

The model is loaded before the clock starts (the service loads it at start-up). The
machine's load average is printed beside the figure: on 2 shared cores it moves the
result more than any change to the code. The process's CPU time per item moves less
(`cpu_ms_per_item`; contention still raises it a little): 2 cores free would index
about 2,000 / cpu_ms_per_item items/s.

Run it with PYTHONPATH set to the checkout under test (`PYTHONPATH=. python
benchmarks/index.py`): otherwise `service` is imported from wherever the virtualenv's
editable install points.

Prints progress lines, then one JSON object on the last line:
{"items_per_s": ..., "items": ..., "seconds": ..., "cpu_ms_per_item": ...,
 "load_avg_1m": [start, end], ...}.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/profile.py shadows the standard library's `profile` (which torch imports
# via cProfile) when Python puts this folder first on the path: take it off.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import tempfile
import time

from fastapi.testclient import TestClient
from sqlalchemy import select

from evals.datasets import load_movielens_latest
from service.core.config import Settings
from service.demo import movie_item
from service.main import create_app
from service.tenants.models import Tenant
from service.tenants.service import create_tenant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=None, help="default: all 9,742 movies")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    movies = load_movielens_latest().items
    items = [movie_item(movies[m]) for m in sorted(movies, key=lambda m: int(m))]
    items = items[:args.items] if args.items else items
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), refresh_worker=False, llm_backend="fake")
        app = create_app(settings)
        with TestClient(app) as client:
            with app.state.container.sessions() as session:
                _, key = create_tenant(session, "bench")
            auth = {"Authorization": f"Bearer {key}"}
            # Model load (and its export to ONNX Runtime, which the first large call makes) is
            # not indexing.
            app.state.container.embedder.embed([f"warm-up {n}" for n in range(256)])
            load_start = os.getloadavg()[0]
            started = time.perf_counter()
            cpu_started = time.process_time()
            for lo in range(0, len(items), args.batch):
                r = client.put("/v1/items", headers=auth, json={"items": items[lo:lo + args.batch]})
                r.raise_for_status()
                assert r.json()["index_pending"] == 0, r.text
                done = lo + len(items[lo:lo + args.batch])
                print(f"{done} items, {done / (time.perf_counter() - started):.0f} items/s",
                      flush=True)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            load_end = os.getloadavg()[0]
            with app.state.container.sessions() as session:
                tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == "bench"))
            stored = app.state.container.vectors.ids(tenant_id, "items")
            assert len(stored) == len(items), (len(stored), len(items))
    print(json.dumps({
        "items_per_s": round(len(items) / seconds, 1), "items": len(items),
        "seconds": round(seconds, 2), "cpu_ms_per_item": round(1000 * cpu_seconds / len(items), 2),
        "batch": args.batch, "cpus": os.cpu_count(),
        "load_avg_1m": [round(load_start, 2), round(load_end, 2)],
        "database": "sqlite", "transport": "in-process ASGI", "service": str(Path(
            sys.modules["service"].__file__ or "").parent),
    }))


if __name__ == "__main__":
    main()
