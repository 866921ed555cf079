"""A small tenant to train, and synthetic logs whose right answers are known."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from service.training.contract import InteractionLog
from service.training.data import Row, log_from_rows
from tests.utils.api import NOW, event, item, make_tenant

SHOWS = ["m1", "m2", "m3", "m4", "m5", "m6"]


def fill_tenant(client: TestClient) -> list[dict[str, Any]]:
    """Tenant acme: twelve users who watch five of the shows in order from different
    starts, rate one, some dislike one; plus a search with no item (not a model event)."""
    t = make_tenant(client, "acme")
    r = t.put("/v1/items", json={"items": [
        item(m, title=f"Show {m}", tags=["drama" if n % 2 else "comedy"], category="series")
        for n, m in enumerate(SHOWS)]})
    assert r.status_code == 200, r.text
    events = []
    for u in range(12):
        for step in range(5):
            show = SHOWS[(u + step) % len(SHOWS)]
            when = NOW - timedelta(days=30 - step, minutes=u)
            if step == 3:
                events.append(event(f"u{u}", "rating", show, value=5, ts=when,
                                    event_id=f"u{u}-{step}"))
            elif step == 2 and u % 4 == 0:
                events.append(event(f"u{u}", "dislike", show, ts=when, event_id=f"u{u}-{step}"))
            else:
                events.append(event(f"u{u}", "view", show, ts=when, event_id=f"u{u}-{step}"))
    events.append(event("u0", "search", None, text="more dramas", event_id="s1"))
    r = t.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    return events


# -- synthetic logs whose right answers are known -----------------------------------------

DAY = 86_400.0
START = 1_700_000_000.0
CYCLE = ["a", "b", "c", "d", "e", "f"]
SPACE = ["s1", "s2", "s3", "s4", "s5", "s6"]
KITCHEN = ["k1", "k2", "k3", "k4", "k5", "k6"]
TEXTS = {
    **{i: f"Space voyage {n}. Tags: sci-fi, space, rockets, astronauts" for n, i in
       enumerate(SPACE)},
    **{i: f"Cooking show {n}. Tags: cooking, recipes, kitchen, baking" for n, i in
       enumerate(KITCHEN)},
    **{i: f"Episode {i}. Tags: cycle" for i in CYCLE},
    "unseen-space": "Mission to Jupiter. Tags: sci-fi, space, astronauts",
}


def cycle_rows(users: int = 30, length: int = 18, seed: int = 0) -> list[Row]:
    """Users who go round a -> b -> ... -> f -> a from a random start."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for u in range(users):
        start = rng.randrange(len(CYCLE))
        for step in range(length):
            item_id = CYCLE[(start + step) % len(CYCLE)]
            rows.append((f"c{u}", item_id, START + u * 100 + step * 3600, 1.0, f"c{u}-{step}"))
    return rows


def cluster_rows(users: int = 40, seed: int = 0) -> list[Row]:
    """Half the users like space items, half kitchen items, each in a random order; a
    few cross over once, so the clusters are not trivially disconnected."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for u in range(users):
        own = list(SPACE if u % 2 == 0 else KITCHEN)
        rng.shuffle(own)
        picks = own[:5]
        if u % 7 == 0:
            picks.insert(2, rng.choice(KITCHEN if u % 2 == 0 else SPACE))
        for step, item_id in enumerate(picks):
            rows.append((f"g{u}", item_id, START + u * 50 + step * DAY, 1.0, f"g{u}-{step}"))
    return rows


def make_log(rows: list[Row]) -> InteractionLog:
    return log_from_rows(rows)
