"""A user's recent events as a token-budgeted, clearly delimited block of untrusted data.

Events are shown under short references (E1, E2, ...) rather than their ids: fewer
tokens, nothing for the model to mistype, and the JSON schema can then allow exactly
these references and no others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from service.catalog.models import Item
from service.ingest.models import Event

TITLE_CHARS = 120
TEXT_CHARS = 300

# How much an action says about an interest; the newest and strongest events win
# when the budget is tight.
TYPE_WEIGHT = {
    "declared": 1.0, "purchase": 0.9, "like": 0.8, "dislike": 0.8, "post": 0.7,
    "search": 0.6, "click": 0.4, "view": 0.3, "skip": 0.3, "rating": 0.6,
}


def event_weight(event: Event, rating_max: float) -> float:
    if event.type == "rating" and event.value is not None and rating_max > 0:
        # Far from the middle (loved or hated) says more than lukewarm.
        return 0.5 + abs(event.value / rating_max - 0.5)
    return TYPE_WEIGHT.get(event.type, 0.3)


def untrusted(text: str, limit: int) -> str:
    """User or catalog text as a quoted JSON string that cannot close our delimiters."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("<", "‹").replace(">", "›")
    return json.dumps(text, ensure_ascii=False)


def describe(event: Event, item: Item | None, rating_max: float) -> str:
    action = event.type
    if event.type == "rating" and event.value is not None:
        action = f"rated {event.value:g}/{rating_max:g}"
    parts = [action]
    if item is not None:
        what = untrusted(item.title, TITLE_CHARS)
        extras = [x for x in [item.category, ", ".join(item.tags[:5])] if x]
        if extras:
            what += " [" + untrusted("; ".join(extras), TITLE_CHARS)[1:-1] + "]"
        parts.append(what)
    elif event.item_id is not None:
        parts.append(untrusted(event.item_id, TITLE_CHARS))
    if event.text:
        parts.append(untrusted(event.text, TEXT_CHARS))
    return " | ".join(parts)


@dataclass
class Activity:
    text: str
    refs: dict[str, str] = field(default_factory=dict)  # "E3" -> event id
    events: list[Event] = field(default_factory=list)  # oldest first

    @property
    def first(self) -> Event | None:
        return self.events[0] if self.events else None

    @property
    def last(self) -> Event | None:
        return self.events[-1] if self.events else None


def build_activity(
    events: list[Event],
    items: dict[str, Item],
    *,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    rating_max: float,
) -> Activity:
    """Pick the events that fit the budget (strongest and newest first), shown oldest first."""
    newest_first = sorted(events, key=lambda e: (e.ts, e.id), reverse=True)
    n = len(newest_first)
    ranked = sorted(
        range(n),
        key=lambda i: -(event_weight(newest_first[i], rating_max) * (1.0 - 0.5 * i / max(n, 1))),
    )
    lines: dict[int, str] = {}
    used = 0
    for i in ranked:
        event = newest_first[i]
        line = describe(event, items.get(event.item_id or ""), rating_max)
        # The widest reference this prompt can have, so the estimate never falls short.
        cost = count_tokens(f"E{n} | {_day(event.ts)} | {line}\n")
        if used + cost > budget_tokens:
            continue
        lines[i] = line
        used += cost
    chosen = sorted(lines, key=lambda i: (newest_first[i].ts, newest_first[i].id))
    activity = Activity(text="")
    out = []
    for number, i in enumerate(chosen, start=1):
        event = newest_first[i]
        ref = f"E{number}"
        activity.refs[ref] = event.event_id
        activity.events.append(event)
        out.append(f"{ref} | {_day(event.ts)} | {lines[i]}")
    activity.text = "\n".join(out)
    return activity


def _day(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M")
