"""Summarizer cost and throughput: one refresh at a time, then several at once.

Runs the real summarizer (prompt building, structured call, validation, storage)
in process against SQLite, with the embedded model by default or any
OpenAI-compatible server (`--base-url http://host:port/v1 --model NAME`).
Concurrent refreshes go to the server together, so its batching is what is measured.

Last line: {"prompt_tokens", "output_tokens", "seconds_per_refresh", "refreshes_per_min",
"concurrent": {...}, ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.core.config import Settings
from service.main import create_app
from service.tenants.service import create_tenant

GENRES = {
    "sci-fi": ["Star", "Orbit", "Android", "Nebula", "Colony", "Signal"],
    "jazz": ["Blue Note", "Late Set", "Bebop", "Saxophone", "Quartet", "Swing"],
    "hiking": ["Trail", "Summit", "Ridge", "Backpack", "Canyon", "Glacier"],
    "cooking": ["Sourdough", "Curry", "Ramen", "Tapas", "Braise", "Pastry"],
    "history": ["Empire", "Dynasty", "Revolution", "Pharaoh", "Siege", "Chronicle"],
}
KINDS = ["Guide", "Stories", "Collection", "Live", "Handbook", "Documentary"]


def catalog(rng: random.Random) -> list[dict[str, Any]]:
    items = []
    for genre, words in GENRES.items():
        for n in range(30):
            title = f"{rng.choice(words)} {rng.choice(KINDS)} {n}"
            items.append({"item_id": f"{genre}-{n}", "title": title, "category": genre,
                          "tags": [genre, rng.choice(words).lower()],
                          "description": f"A {genre} title: {title.lower()}."})
    return items


def history(rng: random.Random, user: str, n_events: int) -> list[dict[str, Any]]:
    liked, disliked = rng.sample(list(GENRES), 2)
    start = datetime.now(UTC) - timedelta(days=20)
    events = []
    for n in range(n_events):
        genre = liked if rng.random() < 0.7 else rng.choice(list(GENRES))
        kind = rng.choice(["view", "view", "click", "like", "purchase", "rating"])
        ev: dict[str, Any] = {"user_id": user, "type": kind,
                              "item_id": f"{genre}-{rng.randrange(30)}",
                              "ts": (start + timedelta(hours=8 * n)).isoformat()}
        if kind == "rating":
            ev["value"] = rng.choice([4, 4.5, 5])
        events.append(ev)
    events.append({"user_id": user, "type": "dislike", "item_id": f"{disliked}-0",
                   "ts": (start + timedelta(hours=8 * n_events)).isoformat()})
    events.append({"user_id": user, "type": "search", "text": f"best {liked} of the year",
                   "ts": (start + timedelta(hours=8 * n_events + 1)).isoformat()})
    return events


def refresh(client: TestClient, auth: dict[str, str], user: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = client.post(f"/v1/users/{user}/summaries", headers=auth)
    wall = time.perf_counter() - t0
    body = r.json()
    ok = r.status_code == 201
    return {"ok": ok, "wall": wall, "prompt_tokens": body.get("prompt_tokens", 0) if ok else 0,
            "output_tokens": body.get("output_tokens", 0) if ok else 0,
            "error": None if ok else body.get("error", {}).get("code")}


def stats(results: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    ok = [r for r in results if r["ok"]]
    return {
        "refreshes": len(results),
        "failures": len(results) - len(ok),
        "prompt_tokens": round(statistics.mean(r["prompt_tokens"] for r in ok)) if ok else 0,
        "output_tokens": round(statistics.mean(r["output_tokens"] for r in ok)) if ok else 0,
        "seconds_per_refresh": round(statistics.mean(r["wall"] for r in results), 2),
        "refreshes_per_min": round(60 * len(results) / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--model", default=None, help="served model name (with --base-url)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--events", type=int, default=40, help="events per user")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        overrides: dict[str, Any] = {"data_dir": Path(tmp)}
        if args.base_url:
            overrides |= {"llm_backend": "openai", "llm_base_url": args.base_url,
                          "llm_model": args.model or "default", "llm_api_key": args.api_key}
        settings = Settings(**overrides)
        app = create_app(settings)
        with TestClient(app) as client:
            with app.state.sessions() as session:
                _, key = create_tenant(session, "bench")
            auth = {"Authorization": f"Bearer {key}"}
            client.put("/v1/items", headers=auth, json={"items": catalog(rng)}).raise_for_status()
            users = [f"user{n}" for n in range(args.users * 2)]
            for user in users:
                r = client.post("/v1/events", headers=auth,
                                json={"events": history(rng, user, args.events)})
                r.raise_for_status()
            model = app.state.llm.model_name
            refresh(client, auth, users[0])  # warm-up: server start, first-request costs

            single_users, concurrent_users = users[1:args.users + 1], users[args.users + 1:]
            t0 = time.perf_counter()
            single = [refresh(client, auth, u) for u in single_users]
            single_stats = stats(single, time.perf_counter() - t0)
            print(f"single: {single_stats}", flush=True)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                both = list(pool.map(lambda u: refresh(client, auth, u), concurrent_users))
            concurrent_stats = stats(both, time.perf_counter() - t0)
            print(f"concurrent x{args.concurrency}: {concurrent_stats}", flush=True)

    print(json.dumps({
        "model": model,
        "server": args.base_url or "embedded llama.cpp",
        "prompt_tokens": single_stats["prompt_tokens"],
        "output_tokens": single_stats["output_tokens"],
        "seconds_per_refresh": single_stats["seconds_per_refresh"],
        "refreshes_per_min": single_stats["refreshes_per_min"],
        "failures": single_stats["failures"],
        "concurrent": {"workers": args.concurrency, **concurrent_stats},
    }))


if __name__ == "__main__":
    main()
