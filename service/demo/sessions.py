"""A demo user's MovieLens history dated to the present and cut into sessions, and the
other raters' ratings moved by one offset: the events the demo sends to the tenant."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from service.datasets.types import Interaction

# Ratings are moved to the present: the newest one an hour before the hour the load
# starts in (`newest_rating_at`), the others before it in their order. Gaps within a
# session (under SESSION_GAP) are kept; a gap between sessions becomes SESSION_SPACING, so
# a history of sessions months or years apart reads as sessions a few days apart: its
# facets are then what the decay rules make of recent sessions (a 7-day short-term
# half-life would forget a session two months old). A history still longer than
# MAX_HISTORY_SPAN is scaled down to it.
NEWEST_BEFORE_LOAD = timedelta(hours=1)
SESSION_SPACING = timedelta(days=2)
MAX_HISTORY_SPAN = timedelta(days=90)
# Each demo user's history is replayed in sessions: ratings separated by at least
# SESSION_GAP start a new one, at most MAX_SESSIONS (the largest gaps are the cuts), and
# the profile is refreshed REFRESH_AFTER each session's last rating, as the worker would
# have; the last session's refresh is at load time. So the inspector's timelines show how
# each user's interests moved across their own sessions.
SESSION_GAP = timedelta(days=1)
MAX_SESSIONS = 3
REFRESH_AFTER = timedelta(hours=1)


def newest_rating_at(load_started: datetime) -> datetime:
    """Where a load dates the newest rating: NEWEST_BEFORE_LOAD before the whole hour the
    load started in. On a whole hour, every load places the ratings alike against the
    tenant's hourly popularity counts (`Popularity.counts`), so loads on any day, at any
    minute, train the same models from the same ratings."""
    return load_started.replace(minute=0, second=0, microsecond=0) - NEWEST_BEFORE_LOAD


def demo_user_id(movielens_user: str) -> str:
    return f"ml-{movielens_user}"


def rating_events(user: str, history: Sequence[Interaction],
                  newest_at: datetime) -> list[dict[str, Any]]:
    """One user's ratings as `rating` events, moved so the newest is at `newest_at`.

    Order is kept, and gaps under SESSION_GAP; a longer gap (between two sessions)
    becomes SESSION_SPACING. A history still longer than MAX_HISTORY_SPAN is scaled down
    to it linearly (gaps shrunk in proportion). Ratings below 3 stay as they are: the
    summarizer reads them as dislikes.
    """
    if not history:
        return []
    offsets = [0.0]  # seconds after the first rating, session gaps respaced
    for before, after in zip(history, history[1:], strict=False):
        gap = after.ts - before.ts
        offsets.append(offsets[-1] + (SESSION_SPACING.total_seconds()
                                      if gap >= SESSION_GAP.total_seconds() else gap))
    span = offsets[-1]
    scale = min(1.0, MAX_HISTORY_SPAN.total_seconds() / span) if span > 0 else 1.0
    newest_at = newest_at.replace(microsecond=0)
    return [{
        "event_id": f"{demo_user_id(user)}-{e.item}", "user_id": demo_user_id(user),
        "type": "rating", "item_id": e.item, "value": e.rating,
        "ts": (newest_at - timedelta(seconds=round((span - offset) * scale))).isoformat(),
    } for e, offset in zip(history, offsets, strict=True)]


def demo_sessions(events: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One user's rating events (oldest first) cut into sessions at the gaps of at least
    SESSION_GAP, at most MAX_SESSIONS of them: the largest gaps are the cuts (the earlier
    gap first on a tie), so the same events always give the same sessions."""
    if not events:
        return []
    stamps = [datetime.fromisoformat(e["ts"]) for e in events]
    gaps = [(stamps[n + 1] - stamps[n], n + 1) for n in range(len(events) - 1)
            if stamps[n + 1] - stamps[n] >= SESSION_GAP]
    cuts = sorted(at for _, at in sorted(gaps, key=lambda g: (-g[0], g[1]))[:MAX_SESSIONS - 1])
    bounds = [0, *cuts, len(events)]
    return [list(events[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def background_events(interactions: Sequence[Interaction], skip: Sequence[str],
                      in_catalog: set[str], newest_at: datetime) -> dict[str, list[dict[str, Any]]]:
    """The data set's other raters' ratings of catalog movies, per demo user id.

    All are moved by one offset so the data set's newest rating lands at `newest_at`:
    the order and gaps between users are kept, which is what co-occurrence, transitions
    and recent popularity learn from.
    """
    if not interactions:
        return {}
    newest_at = newest_at.replace(microsecond=0)
    last = max(e.ts for e in interactions)
    per_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in interactions:
        if e.user in skip or e.item not in in_catalog:
            continue
        user_id = demo_user_id(e.user)
        per_user[user_id].append({
            "event_id": f"{user_id}-{e.item}", "user_id": user_id, "type": "rating",
            "item_id": e.item, "value": e.rating,
            "ts": (newest_at - timedelta(seconds=last - e.ts)).isoformat()})
    return per_user
