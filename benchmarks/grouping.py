"""Grouping unread events, in process, without a database: how long `group_events` takes
for one refresh's worth of events (10,000 by default, over a 3,000-item catalog of four
topics whose item vectors point roughly one way per topic), what a refresh does first.

Prints progress lines, then one JSON object on the last line:
{"events": ..., "p50_s": ..., "best_s": ..., "groups": ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from service.catalog.models import Item
from service.ingest.models import Event
from service.summaries.grouping import group_events

TOPICS = {
    "jazz": ["jazz", "saxophone", "bebop"],
    "hiking": ["hiking", "trails", "outdoor gear"],
    "cooking": ["cooking", "recipes", "baking"],
    "space": ["sci-fi", "space", "astronauts"],
}
KINDS = ["view", "view", "like", "purchase", "rating", "skip"]


def unit(seed: int, dims: int = 384) -> npt.NDArray[np.float32]:
    v = np.random.default_rng(seed).normal(size=dims).astype(np.float32)
    return v / np.linalg.norm(v)


def catalog(n_items: int) -> tuple[dict[str, Item], dict[str, npt.NDArray[np.float32]]]:
    """Items of one topic share a direction plus noise, and one to three of its tags plus
    one of 50 others."""
    items, vectors = {}, {}
    for n in range(n_items):
        topic = list(TOPICS)[n % len(TOPICS)]
        items[f"i{n}"] = Item(item_id=f"i{n}", title=f"Item {n}",
                              tags=[*TOPICS[topic][: 1 + n % 3], f"tag{n % 50}"],
                              category=topic, attributes={})
        v = unit(list(TOPICS).index(topic) + 100) + 0.3 * unit(n)
        vectors[f"i{n}"] = (v / np.linalg.norm(v)).astype(np.float32)
    return items, vectors


def activity(n_events: int, n_items: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [Event(id=n + 1, event_id=f"e{n + 1}", type=(kind := rng.choice(KINDS)),
                  item_id=f"i{rng.randrange(n_items)}",
                  value=float(rng.randint(1, 5)) if kind == "rating" else None, text=None,
                  ts=now - timedelta(seconds=n_events - n))
            for n in range(n_events)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    items, vectors = catalog(args.items)
    events = activity(args.events, args.items, args.seed)
    seconds = []
    for round_ in range(args.rounds):
        started = time.perf_counter()
        groups = group_events(events, items, vectors, {}, rating_max=5)
        seconds.append(time.perf_counter() - started)
        print(f"round {round_ + 1}: {len(groups)} groups in {seconds[-1]:.2f} s")
    print(json.dumps({
        "events": args.events,
        "items": args.items,
        "rounds": args.rounds,
        "p50_s": round(statistics.median(seconds), 3),
        "best_s": round(min(seconds), 3),
        "groups": len(groups),
        "like_groups": sum(g.polarity == "like" for g in groups),
        "avoid_groups": sum(g.polarity == "avoid" for g in groups),
    }))


if __name__ == "__main__":
    main()
