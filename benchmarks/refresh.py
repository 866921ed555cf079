"""Profile refresh cost on MovieLens users: group, name each group, narrate, merge.

Loads a catalog of ml-latest-small movies (genres and tags as item tags, as the demo
does) into a fresh tenant, gives each sampled user their last `--events` ratings as
new events, and times `POST /v1/users/{id}/profile/refresh` in process (SQLite, Chroma
folder, MiniLM), one refresh at a time, with the embedded model by default or any
OpenAI-compatible server (`--base-url http://host:port/v1 --model NAME`). Then each
user's first refresh is followed by a second one over `--second` newer events, the
steady state of a live profile.

The embedded model is slow on 2 cores: run it under `nice` with a few users.

Last line: {"model", "users", "events_per_refresh", "p50_s", "p95_s", "prompt_tokens":
{"mean", "max"}, "output_tokens": {...}, "groups": ..., "model_labels_share": ...,
"failures": ...}.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python benchmarks/refresh.py`, this folder comes first on sys.path, and
# benchmarks/profile.py then shadows the standard `profile` module (torch imports it
# through cProfile, the embedder imports torch). Drop the folder first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from evals.datasets import ML_LATEST_SMALL, load_movielens_latest  # noqa: E402
from evals.types import Interaction  # noqa: E402
from service.core.config import Settings  # noqa: E402
from service.demo import movie_item, rating_events  # noqa: E402
from service.main import create_app  # noqa: E402
from service.tenants.service import create_tenant  # noqa: E402


def sample_users(by_user: dict[str, list[Interaction]], n: int, events: int,
                 seed: int) -> list[str]:
    """Users with enough ratings for `events` new ones, sampled with a fixed seed."""
    eligible = sorted(u for u, rows in by_user.items() if len(rows) >= events)
    return sorted(random.Random(seed).sample(eligible, min(n, len(eligible))), key=int)


def refresh(client: TestClient, auth: dict[str, str], user: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = client.post(f"/v1/users/{user}/profile/refresh", headers=auth)
    wall = time.perf_counter() - t0
    if r.status_code != 200:
        return {"ok": False, "wall": wall, "error": r.json().get("error", {}).get("code")}
    run = client.get(f"/v1/users/{user}/summaries", headers=auth,
                     params={"limit": 1}).json()["runs"][0]
    facets = run["summary"]["facets"]
    return {"ok": True, "wall": wall, "prompt_tokens": run["prompt_tokens"],
            "output_tokens": run["output_tokens"], "events": run["events_read"],
            "groups": len(facets),
            "model_labels": sum(f["label_source"] == "model" for f in facets),
            "labels": [f"{f['polarity']}: {f['label']}" for f in facets],
            "narrative": run["summary"]["narrative"]}


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if r["ok"]]
    walls = [r["wall"] for r in results]

    def spread(key: str) -> dict[str, float]:
        values = [r[key] for r in ok] or [0]
        return {"mean": round(float(np.mean(values)), 1), "max": int(max(values))}

    groups = sum(r["groups"] for r in ok)
    return {
        "refreshes": len(results), "failures": len(results) - len(ok),
        "p50_s": round(float(np.percentile(walls, 50)), 2) if walls else 0.0,
        "p95_s": round(float(np.percentile(walls, 95)), 2) if walls else 0.0,
        "prompt_tokens": spread("prompt_tokens"), "output_tokens": spread("output_tokens"),
        "events_read": spread("events"), "groups": spread("groups"),
        "model_labels_share": round(sum(r["model_labels"] for r in ok) / groups, 3)
        if groups else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(ML_LATEST_SMALL), help="ml-latest-small folder")
    parser.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--model", default=None, help="served model name (with --base-url)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--events", type=int, default=100, help="new events in the first refresh")
    parser.add_argument("--second", type=int, default=20,
                        help="newer events in each user's second refresh (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print each user's labels")
    args = parser.parse_args()

    dataset = load_movielens_latest(args.data)
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for row in dataset.interactions:
        by_user[row.user].append(row)
    users = sample_users(by_user, args.users, args.events + args.second, args.seed)
    wanted = {row.item for u in users for row in by_user[u]}
    catalog = [movie_item(dataset.items[i]) for i in sorted(wanted) if i in dataset.items]
    now = datetime.now(UTC)

    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, Any] = {"data_dir": Path(tmp), "refresh_worker": False,
                                     "demo": False}
        if args.base_url:
            overrides |= {"llm_backend": "openai", "llm_base_url": args.base_url,
                          "llm_model": args.model or "default", "llm_api_key": args.api_key}
        settings = Settings(**overrides)
        app = create_app(settings)
        with TestClient(app) as client:
            with app.state.container.sessions() as session:
                _, key = create_tenant(session, "bench")
            auth = {"Authorization": f"Bearer {key}"}
            for start in range(0, len(catalog), 500):
                client.put("/v1/items", headers=auth,
                           json={"items": catalog[start:start + 500]}).raise_for_status()
            history = {u: rating_events(u, by_user[u][-(args.events + args.second):], now)
                       for u in users}
            for u in users:
                first = history[u][:args.events]
                client.post("/v1/events", headers=auth, json={"events": first}).raise_for_status()
            model = app.state.container.llm.model_name
            # Warm-up: server start and first-request costs, on a throwaway user.
            warm = [{**e, "user_id": "warm-up", "event_id": f"w{n}"}
                    for n, e in enumerate(history[users[0]][:5])]
            client.post("/v1/events", headers=auth, json={"events": warm}).raise_for_status()
            client.post("/v1/users/warm-up/profile/refresh", headers=auth)

            firsts = []
            for u in users:
                firsts.append(refresh(client, auth, f"ml-{u}"))
                if args.verbose and firsts[-1]["ok"]:
                    print(f"ml-{u}: {firsts[-1]['labels']} | {firsts[-1]['narrative']}",
                          flush=True)
            first_stats = summary(firsts)
            print(f"first refresh ({args.events} new events): {first_stats}", flush=True)

            seconds = []
            if args.second:
                for u in users:
                    later = history[u][args.events:]
                    client.post("/v1/events", headers=auth,
                                json={"events": later}).raise_for_status()
                    seconds.append(refresh(client, auth, f"ml-{u}"))
                print(f"second refresh ({args.second} new events): {summary(seconds)}",
                      flush=True)

    print(json.dumps({
        "model": model, "server": args.base_url or "embedded llama.cpp",
        "users": len(users), "events_per_refresh": args.events,
        "p50_s": first_stats["p50_s"], "p95_s": first_stats["p95_s"],
        "prompt_tokens": first_stats["prompt_tokens"],
        "output_tokens": first_stats["output_tokens"],
        "groups": first_stats["groups"], "model_labels_share": first_stats["model_labels_share"],
        "failures": first_stats["failures"],
        "second_refresh": summary(seconds) if seconds else None,
    }))


if __name__ == "__main__":
    main()
