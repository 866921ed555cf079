"""Loading MovieLens into the demo tenant: the catalog (embedded as it goes), the demo
users' first sessions, the other raters, then the replay of the demo users' profiles and
the tenant's models. Every step skips what is already there (see the package docstring)."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from service.catalog.service import index_pending_items, upsert_items
from service.core.config import Settings
from service.datasets.movielens import ML_LATEST_SMALL, load_movielens_latest
from service.datasets.types import Interaction, ItemInfo
from service.demo.replay import replay_profiles
from service.demo.sessions import (
    background_events,
    demo_sessions,
    demo_user_id,
    newest_rating_at,
    rating_events,
)
from service.demo.state import (
    DEMO_TENANT,
    KEY_FILE,
    RENEW_AFTER,
    DemoError,
    DemoLoad,
    ProgressHook,
    demo_state,
    forget_users,
    no_progress,
    write_marker,
)
from service.ingest.models import Event
from service.ingest.service import ingest_events
from service.profiles.runtime import ProfileRuntime
from service.tenants.service import ensure_tenant_key
from service.users.models import User

CATALOG_BATCH = 1000
MAX_TAGS = 20
YEAR = re.compile(r"\((\d{4})\)\s*$")


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


def print_line(line: str) -> None:
    print(line, flush=True)  # in order with tqdm's bars (stderr) when output is a file


def load_demo(settings: Settings, sessions: sessionmaker[Session], rt: ProfileRuntime,
              dataset_dir: Path = ML_LATEST_SMALL, say: Callable[[str], None] = print_line,
              progress: bool = True, on_progress: ProgressHook = no_progress) -> DemoLoad:
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
        state = demo_state(settings, session, tenant_id, rt.clock())
        if state == "ready":
            return result
        if state == "renew":
            say(f"demo: loaded more than {RENEW_AFTER.days} days ago; reloading the demo users "
                "with ratings dated today, so their interests have not decayed away")
            forget_users(session, tenant_id, result.user_ids, rt)
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
    newest_at = newest_rating_at(rt.clock())
    with sessions() as session:
        _load_catalog(session, tenant_id, catalog, rt, progress, on_progress)
        result.events = _load_ratings(session, tenant_id, users, histories, newest_at,
                                      rt.settings, say, on_progress)
        if settings.demo_background_raters:
            in_catalog = {row["item_id"] for row in catalog}
            result.events += _load_background(session, tenant_id, dataset.interactions,
                                              users, in_catalog, newest_at, rt, say,
                                              progress, on_progress)
    replay_profiles(sessions, tenant_id, result, rt, users, histories, newest_at, progress,
                      on_progress)
    if settings.demo_background_raters:
        on_progress("training", 0, 1)
        _train_models(sessions, tenant_id, result, rt, say, progress)
        on_progress("training", 1, 1)

    result.seconds = time.perf_counter() - started
    for line in result.failures:
        say(f"demo: refresh failed for {line}")
    if result.complete:
        write_marker(settings, tenant_id, result, rt.clock())
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


def _load_background(session: Session, tenant_id: int, interactions: Sequence[Interaction],
                     demo_users: Sequence[str], in_catalog: set[str], newest_at: datetime,
                     rt: ProfileRuntime, say: Callable[[str], None], progress: bool,
                     on_progress: ProgressHook) -> int:
    """The other raters, in full batches, their times moved as the demo users' are (the
    same `newest_at`: how long the catalog took to load does not change when the raters'
    events fall beside the demo users'). Events carry stable ids and ingest is
    idempotent, so a load resumed after a crash sends them again and stores only what
    was missing."""
    per_user = background_events(interactions, demo_users, in_catalog, newest_at)
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


# The demo's first training fits the sequence model for this many epochs (unless
# `train_sequence_epochs` says otherwise) instead of the time budget: with the ratings
# dated on a whole hour, every load then trains the same models and serves the same
# lists on any machine, however busy (the ones tests/test_demo.py checks); the worker's
# later retraining keeps the budget.
DEMO_SEQUENCE_EPOCHS = 10


def _train_models(sessions: sessionmaker[Session], tenant_id: int, result: DemoLoad,
                  rt: ProfileRuntime, say: Callable[[str], None], progress: bool) -> None:
    """The tenant's recommender models, so the first lists are the hybrid ones. A failure
    is reported, not fatal: lists use facets and popular items meanwhile, and the worker
    trains a tenant without models on its next pass."""
    from service.training.jobs import train_with_ranker

    settings = rt.settings
    if settings.train_sequence_epochs is None:
        settings = settings.model_copy(update={"train_sequence_epochs": DEMO_SEQUENCE_EPOCHS})
    say("demo: training the tenant's recommender models (a few minutes on 2 cores)")
    with sessions() as session:
        try:
            meta = train_with_ranker(session, tenant_id, settings, rt.vectors,
                                     progress=progress)
        except Exception as exc:  # whatever went wrong, the demo still serves
            session.rollback()
            result.training_problem = f"{type(exc).__name__}: {exc}"
            say(f"demo: training failed ({result.training_problem}); the worker retries")
            return
    result.models_version = meta.version
    say(f"demo: models {meta.version} trained in {meta.seconds:.0f} s on "
        f"{meta.events_used:,} events (ranker: {'yes' if meta.ranker else 'no'})")
