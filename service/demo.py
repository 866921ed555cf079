"""The demo tenant: the bundled ml-latest-small movies and a few of its raters.

`interest-tracker serve` (and so `make run`) loads it on first start, in a thread of the
running service (`BackgroundDemo`: it answers at once; /readyz and the inspector show
the load's progress), so a newcomer's first lists are explained recommendations.
Everything goes in through the service's own functions, exactly as through the API:
catalog upsert (embedded into the tenant's item collection), rating events, then one
profile refresh per user with the configured LLM.

Loading is idempotent and resumable. A marker file in the data folder is written only
after every step succeeded; until then each start runs the load again, and every step
skips what is already there: unchanged items are left alone and only unindexed ones
are embedded, a user's ratings go in as one all-or-nothing batch (so a user with any
stored event has all of them), and only users without a refreshed profile (or made
stale since) are refreshed. A failed refresh (the model is down) is reported, the
rest still loads, and the marker stays unwritten so the next start retries it; until
then that user gets the popular fallback.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from service.catalog.service import index_pending_items, upsert_items
from service.core.config import Settings
from service.core.errors import ApiError
from service.datasets.movielens import ML_LATEST_SMALL, load_movielens_latest
from service.datasets.types import Interaction, ItemInfo
from service.ingest.models import Event
from service.ingest.service import ingest_events
from service.profiles.models import Profile
from service.profiles.service import ProfileRuntime, refresh_many
from service.tenants.service import ensure_tenant_key
from service.users.models import User
from service.users.service import delete_user

DEMO_TENANT = "demo"
KEY_FILE = "demo-api-key"
MARKER_FILE = "demo-loaded.json"

# The default demo users (Settings.demo_users), picked for clearly different tastes and
# modest histories; what they like, for the start-up message.
TASTES = {
    "401": "animated family adventures",
    "454": "classic horror and mystery thrillers",
    "309": "golden-age dramas, war films and westerns",
}

# Ratings are moved to the present: the newest one an hour before the load, the others
# before it in their order. Gaps within a session (under SESSION_GAP) are kept; a gap
# between sessions becomes SESSION_SPACING, so a history of sessions months or years
# apart reads as sessions a few days apart: its facets are then what the decay rules make
# of recent sessions (a 7-day short-term half-life would forget a session two months old).
# A history still longer than MAX_HISTORY_SPAN is scaled down to it.
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
# The demo users are reloaded at today's dates when the load is older than this.
RENEW_AFTER = timedelta(days=7)
CATALOG_BATCH = 1000
MAX_TAGS = 20
YEAR = re.compile(r"\((\d{4})\)\s*$")


class DemoError(RuntimeError):
    """The demo cannot be loaded at all (a user id not in the data set, a failed index)."""


class DemoCancelled(Exception):
    """The service is shutting down while the demo loads; the next start resumes it."""


# Where a load is: (stage, done, total). Stages, in order: catalog (movies indexed),
# ratings (demo users' first sessions stored), raters (other raters' ratings stored),
# profiles (demo users replayed session by session and refreshed), training (0 of 1, then
# 1 of 1). A hook may raise DemoCancelled to stop.
ProgressHook = Callable[[str, int, int], None]
STAGES = ("catalog", "ratings", "raters", "profiles", "training")


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class DemoLoad:
    key: str
    key_file: Path
    user_ids: list[str]
    loaded: bool  # False: the marker said it was all there already
    items: int = 0
    events: int = 0
    refreshed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    models_version: str | None = None
    training_problem: str | None = None

    @property
    def complete(self) -> bool:
        return not self.failures


def demo_user_id(movielens_user: str) -> str:
    return f"ml-{movielens_user}"


def movie_item(info: ItemInfo) -> dict[str, Any]:
    """A movie as a catalog item: genres first, then its most used MovieLens tags."""
    tags: dict[str, str] = {}
    for tag in (*info.genres, *info.tags):
        tag = " ".join(tag.split())[:100]
        if tag:
            tags.setdefault(tag.casefold(), tag)
    row: dict[str, Any] = {"item_id": info.item_id, "title": info.title[:500] or info.item_id,
                           "category": "movie", "tags": list(tags.values())[:MAX_TAGS]}
    year = YEAR.search(info.title)
    if year:
        row["attributes"] = {"year": int(year.group(1))}
    return row


def demo_catalog(items: dict[str, ItemInfo], interactions: Sequence[Interaction],
                 users: Sequence[str], limit: int | None) -> list[dict[str, Any]]:
    """Catalog rows: everything, or the demo users' movies plus the most rated others."""
    chosen = set(items)
    if limit is not None:
        chosen = {e.item for e in interactions if e.user in users and e.item in items}
        counts = Counter(e.item for e in interactions if e.item in items)
        for movie in sorted(items, key=lambda m: (-counts[m], int(m) if m.isdigit() else 0, m)):
            if len(chosen) >= limit:
                break
            chosen.add(movie)
    order = sorted(chosen, key=lambda m: (int(m) if m.isdigit() else 0, m))
    return [movie_item(items[m]) for m in order]


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


def _marker_path(settings: Settings) -> Path:
    return settings.data_dir / MARKER_FILE


def _wanted(settings: Settings, tenant_id: int) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "users": list(settings.demo_users),
            "catalog_limit": settings.demo_catalog_limit}


def _state(settings: Settings, session: Session, tenant_id: int, now: datetime) -> str:
    """'ready', 'load' (never loaded, changed, or the database lost it) or 'renew'.

    The marker must name this database's demo tenant and the demo asked for now, and the
    database must still hold every demo user with a refreshed profile (a new database or
    a wiped one next to an old marker is loaded again). A demo loaded more than
    RENEW_AFTER ago is 'renew': its facets are short-term and would decay below the
    archive floor within weeks, leaving only popular lists.
    """
    try:
        marker = json.loads(_marker_path(settings).read_text())
    except (OSError, ValueError):
        return "load"
    wanted = _wanted(settings, tenant_id)
    if not isinstance(marker, dict) or any(marker.get(k) != v for k, v in wanted.items()):
        return "load"
    ids = [demo_user_id(u) for u in settings.demo_users]
    profiled = session.scalar(
        select(func.count()).select_from(User).join(Profile, Profile.user_pk == User.id)
        .where(User.tenant_id == tenant_id, User.user_id.in_(ids), Profile.version > 0))
    if (profiled or 0) < len(ids):
        return "load"
    try:
        loaded_at = datetime.fromisoformat(str(marker.get("loaded_at")))
    except ValueError:
        return "renew"
    return "renew" if now - loaded_at > RENEW_AFTER else "ready"


def _forget_users(session: Session, tenant_id: int, user_ids: Sequence[str],
                  rt: ProfileRuntime) -> None:
    for user_id in user_ids:
        try:
            delete_user(session, tenant_id, user_id, rt.vectors)
        except ApiError as exc:
            if exc.status != 404:
                raise


def _write_marker(settings: Settings, tenant_id: int, result: DemoLoad, at: datetime) -> None:
    path = _marker_path(settings)
    body = {**_wanted(settings, tenant_id), "items": result.items, "loaded_at": at.isoformat()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(tmp, path)  # never half a marker


def _say(line: str) -> None:
    print(line, flush=True)  # in order with tqdm's bars (stderr) when output is a file


def load_demo(settings: Settings, sessions: sessionmaker[Session], rt: ProfileRuntime,
              dataset_dir: Path = ML_LATEST_SMALL, say: Callable[[str], None] = _say,
              progress: bool = True, on_progress: ProgressHook = _no_progress) -> DemoLoad:
    """Make sure the demo tenant is loaded; a no-op (but for the key) once it is.

    `on_progress` hears where the load is after every batch (see ProgressHook).
    """
    started = time.perf_counter()
    key_file = settings.data_dir / KEY_FILE
    with sessions() as session:
        tenant, key = ensure_tenant_key(session, DEMO_TENANT, key_file)
        tenant_id = tenant.id
    users = list(settings.demo_users)
    result = DemoLoad(key=key, key_file=key_file, user_ids=[demo_user_id(u) for u in users],
                      loaded=False)
    with sessions() as session:
        state = _state(settings, session, tenant_id, rt.clock())
        if state == "ready":
            return result
        if state == "renew":
            say(f"demo: loaded more than {RENEW_AFTER.days} days ago; reloading the demo users "
                "with ratings dated today, so their interests have not decayed away")
            _forget_users(session, tenant_id, result.user_ids, rt)
    result.loaded = True

    dataset = load_movielens_latest(dataset_dir)
    histories: dict[str, list[Interaction]] = defaultdict(list)
    for e in dataset.interactions:  # sorted by (ts, seq)
        if e.user in users:
            histories[e.user].append(e)
    unknown = [u for u in users if not histories[u]]
    if unknown:
        raise DemoError(f"no ratings for demo user(s) {', '.join(unknown)} in {dataset_dir}")
    catalog = demo_catalog(dataset.items, dataset.interactions, users,
                           settings.demo_catalog_limit)
    say(f"demo: loading tenant '{DEMO_TENANT}' ({len(catalog):,} movies of {dataset.name}, "
        f"users {', '.join(result.user_ids)}). This happens once, on first start, in the "
        "background, and takes a few minutes on a small CPU (on 2 cores: under a minute to "
        "embed the whole catalog when idle, a few seconds per profile with the embedded "
        "model, about three minutes to train the tenant's models); later starts skip it.")

    result.items = len(catalog)
    newest_at = rt.clock() - NEWEST_BEFORE_LOAD
    with sessions() as session:
        _load_catalog(session, tenant_id, catalog, rt, progress, on_progress)
        result.events = _load_ratings(session, tenant_id, users, histories, newest_at,
                                      rt.settings, say, on_progress)
        if settings.demo_background_raters:
            in_catalog = {row["item_id"] for row in catalog}
            result.events += _load_background(session, tenant_id, dataset.interactions,
                                              users, in_catalog, rt, say, progress,
                                              on_progress)
    _refresh_profiles(sessions, tenant_id, result, rt, users, histories, newest_at, progress,
                      on_progress)
    if settings.demo_background_raters:
        on_progress("training", 0, 1)
        _train_models(sessions, tenant_id, result, rt, say, progress)
        on_progress("training", 1, 1)

    result.seconds = time.perf_counter() - started
    for line in result.failures:
        say(f"demo: refresh failed for {line}")
    if result.complete:
        _write_marker(settings, tenant_id, result, rt.clock())
        say(f"demo: loaded in {result.seconds:.0f} s")
    else:
        say(f"demo: loaded in {result.seconds:.0f} s except {len(result.failures)} profile(s); "
            "those users get popular items until a refresh succeeds (the next start retries)")
    return result


def _load_catalog(session: Session, tenant_id: int, catalog: list[dict[str, Any]],
                  rt: ProfileRuntime, progress: bool, on_progress: ProgressHook) -> None:
    """Upsert in batches and embed each as it goes (only new or changed items)."""
    on_progress("catalog", 0, len(catalog))
    with tqdm(total=len(catalog), desc="demo catalog", unit="movie",
              disable=not progress) as bar:
        for lo in range(0, len(catalog), CATALOG_BATCH):
            batch = catalog[lo:lo + CATALOG_BATCH]
            upsert_items(session, tenant_id, batch)
            _, pending = index_pending_items(session, tenant_id, rt.embedder, rt.vectors)
            if pending:
                raise DemoError(f"{pending} demo items could not be embedded (see the log); "
                                "the next start retries")
            bar.update(len(batch))
            on_progress("catalog", lo + len(batch), len(catalog))


def _load_ratings(session: Session, tenant_id: int, users: Sequence[str],
                  histories: dict[str, list[Interaction]], newest_at: datetime,
                  settings: Settings, say: Callable[[str], None],
                  on_progress: ProgressHook) -> int:
    """Each user's first session of ratings (`demo_sessions`) in one all-or-nothing
    batch; skipped if the user has any event stored. The later sessions go in when the
    profiles stage replays them."""
    accepted = 0
    for n, user in enumerate(users):
        on_progress("ratings", n, len(users))
        stored = session.scalar(
            select(Event.id).join(User, User.id == Event.user_pk)
            .where(User.tenant_id == tenant_id, User.user_id == demo_user_id(user)).limit(1))
        if stored is not None:
            continue
        first = demo_sessions(rating_events(user, histories[user], newest_at))[0]
        accepted += ingest_events(session, tenant_id, first, settings).accepted
    on_progress("ratings", len(users), len(users))
    if accepted:
        say(f"demo: {accepted} ratings of the demo users' first sessions stored; their "
            f"histories end {newest_at:%Y-%m-%d %H:%M} UTC")
    return accepted


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


def _load_background(session: Session, tenant_id: int, interactions: Sequence[Interaction],
                     demo_users: Sequence[str], in_catalog: set[str], rt: ProfileRuntime,
                     say: Callable[[str], None], progress: bool,
                     on_progress: ProgressHook) -> int:
    """The other raters, in full batches. Events carry stable ids and ingest is
    idempotent, so a load resumed after a crash sends them again and stores only what
    was missing."""
    per_user = background_events(interactions, demo_users, in_catalog,
                                 rt.clock() - NEWEST_BEFORE_LOAD)
    events = [e for user_id in sorted(per_user) for e in per_user[user_id]]
    limit = rt.settings.max_batch_events
    accepted = 0
    on_progress("raters", 0, len(events))
    with tqdm(total=len(events), desc="demo raters", unit="rating",
              disable=not progress) as bar:
        for lo in range(0, len(events), limit):
            part = events[lo:lo + limit]
            accepted += ingest_events(session, tenant_id, part, rt.settings).accepted
            bar.update(len(part))
            on_progress("raters", lo + len(part), len(events))
    # They are there for the models: the worker would otherwise summarize all of them
    # with the LLM (hours of CPU on a laptop). A refresh on request still builds one.
    session.execute(update(User).where(User.tenant_id == tenant_id,
                                       User.user_id.in_(list(per_user)))
                    .values(stale=False, events_since_refresh=0))
    session.commit()
    if accepted:
        say(f"demo: {accepted:,} ratings of {len(per_user)} other raters stored, for the "
            "tenant's recommender models to learn from")
    return accepted


def _train_models(sessions: sessionmaker[Session], tenant_id: int, result: DemoLoad,
                  rt: ProfileRuntime, say: Callable[[str], None], progress: bool) -> None:
    """The tenant's recommender models, so the first lists are the hybrid ones. A failure
    is reported, not fatal: lists use facets and popular items meanwhile, and the worker
    trains a tenant without models on its next pass."""
    from service.training.jobs import train_with_ranker

    say("demo: training the tenant's recommender models (a few minutes on 2 cores)")
    with sessions() as session:
        try:
            meta = train_with_ranker(session, tenant_id, rt.settings, rt.vectors,
                                     progress=progress)
        except Exception as exc:  # whatever went wrong, the demo still serves
            session.rollback()
            result.training_problem = f"{type(exc).__name__}: {exc}"
            say(f"demo: training failed ({result.training_problem}); the worker retries")
            return
    result.models_version = meta.version
    say(f"demo: models {meta.version} trained in {meta.seconds:.0f} s on "
        f"{meta.events_used:,} events (ranker: {'yes' if meta.ranker else 'no'})")


def _fixed_clock(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def _refresh_profiles(sessions: sessionmaker[Session], tenant_id: int, result: DemoLoad,
                      rt: ProfileRuntime, users: Sequence[str],
                      histories: dict[str, list[Interaction]], newest_at: datetime,
                      progress: bool, on_progress: ProgressHook) -> None:
    """Each demo user's history replayed session by session (`demo_sessions`): a session's
    ratings go in, then the profile is refreshed as of REFRESH_AFTER its last rating (the
    last session's at load time), so each session leaves a profile version.

    Resumable: a session whose next one is already stored is skipped (a later refresh
    reads its events); a stored rating is not sent again, and the rest keep their gaps to
    the stored ones; a user is refreshed only with unread events or no profile yet. A
    failed refresh stops that user's replay (its later sessions stay out, so no refresh
    reads ratings newer than its own time) and the next load goes on from there.
    """
    todo = sorted(users, key=demo_user_id)
    for n, user in enumerate(tqdm(todo, desc="demo profiles", unit="user",
                                  disable=not progress)):
        on_progress("profiles", n, len(todo))
        user_id = demo_user_id(user)
        events = rating_events(user, histories[user], newest_at)
        with sessions() as session:
            stored = dict(session.execute(
                select(Event.event_id, Event.ts).join(User, User.id == Event.user_pk)
                .where(User.tenant_id == tenant_id, User.user_id == user_id)).all())
        # An earlier load dated the stored ratings: the rest keep their gaps to those.
        anchor = next((e for e in events if e["event_id"] in stored), None)
        if anchor is not None:
            shift = stored[anchor["event_id"]] - datetime.fromisoformat(anchor["ts"])
            events = [{**e, "ts": (datetime.fromisoformat(e["ts"]) + shift).isoformat()}
                      for e in events]
        parts = demo_sessions(events)
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            if not last and any(e["event_id"] in stored for e in parts[k + 1]):
                continue
            with sessions() as session:
                missing = [e for e in part if e["event_id"] not in stored]
                if missing:
                    result.events += ingest_events(session, tenant_id, missing,
                                                   rt.settings).accepted
                found = session.execute(
                    select(User.id, User.stale, Profile.version)
                    .outerjoin(Profile, Profile.user_pk == User.id)
                    .where(User.tenant_id == tenant_id, User.user_id == user_id)).first()
            if found is None or not (found.stale or not found.version):
                continue
            at = (rt.clock() if last
                  else datetime.fromisoformat(part[-1]["ts"]) + REFRESH_AFTER)
            refreshed, failures = refresh_many(
                sessions, [found.id], replace(rt, clock=_fixed_clock(at)), "demo",
                desc="demo profiles", progress=False)
            result.refreshed += [u for u in refreshed if u not in result.refreshed]
            result.failures += failures
            if failures:
                break
    on_progress("profiles", len(todo), len(todo))


@dataclass
class DemoStatus:
    """A snapshot of a background load, for /readyz and the inspector."""

    state: str  # "loading", "loaded" or "failed"
    stage: str  # "starting", one of STAGES, or "done"
    done: int
    total: int
    seconds: float
    error: str | None = None


class BackgroundDemo:
    """Loads the demo in a thread of the running service, so it answers at once.

    Progress is kept for /readyz and the inspector; a failure is kept (and printed),
    never raised: the service serves anyway and the next start retries. `stop` asks
    the load to end at its next batch (the marker stays unwritten, the next start
    resumes). `then` runs after the load, whatever its outcome (the app starts its
    refresh worker there, so the worker never races the load for the demo users).
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], rt: ProfileRuntime,
                 then: Callable[[], None] | None = None,
                 say: Callable[[str], None] = _say, progress: bool = True) -> None:
        self._settings = settings
        self._sessions = sessions
        self._rt = rt
        self._then = then
        self._say = say
        self._progress = progress
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.perf_counter()
        self._status = DemoStatus(state="loading", stage="starting", done=0, total=0, seconds=0)
        self.result: DemoLoad | None = None

    def status(self) -> DemoStatus:
        with self._lock:
            status = DemoStatus(**vars(self._status))
        if status.state == "loading":
            status.seconds = round(time.perf_counter() - self._started, 1)
        return status

    def _update(self, stage: str, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise DemoCancelled
        with self._lock:
            self._status.stage, self._status.done, self._status.total = stage, done, total

    def _finish(self, state: str, error: str | None = None) -> None:
        with self._lock:
            self._status.state, self._status.error = state, error
            if state == "loaded":
                self._status.stage = "done"
            self._status.seconds = round(time.perf_counter() - self._started, 1)

    def start(self) -> None:
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="demo-load", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        try:
            with self._sessions() as session:
                _, key = ensure_tenant_key(session, DEMO_TENANT, self._settings.data_dir / KEY_FILE)
            self._say(f"demo API key (tenant '{DEMO_TENANT}'): {key}")
            self._say(f"  also in {self._settings.data_dir / KEY_FILE}")
            users = ", ".join(f"{demo_user_id(u)} ({TASTES[u]})" if u in TASTES
                              else demo_user_id(u) for u in self._settings.demo_users)
            self._say(f"  demo users: {users}")
            self.result = load_demo(self._settings, self._sessions, self._rt, say=self._say,
                                    progress=self._progress, on_progress=self._update)
        except DemoCancelled:
            self._finish("failed", "stopped with the service; the next start resumes")
        except Exception as exc:  # whatever went wrong: serve anyway, retry at the next start
            problem = f"{type(exc).__name__}: {exc}"
            print(f"demo: not loaded ({problem}); the next start retries", file=sys.stderr,
                  flush=True)
            self._finish("failed", problem)
        else:
            # Users whose refresh failed get popular items until the next start retries.
            failures = self.result.failures
            self._finish("loaded", "refresh failed for " + "; ".join(failures)
                         if failures else None)
        finally:
            if self._then is not None and not self._cancel.is_set():
                self._then()
