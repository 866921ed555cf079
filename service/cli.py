"""The `interest-tracker` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.core.config import Settings
from service.core.db import make_engine, make_sessionmaker, migrate
from service.tenants.service import (
    DEV_KEY_FILE,
    DEV_TENANT,
    TenantError,
    create_tenant,
    ensure_dev_key,
    tenant_by_name,
)
from service.users.models import User

# Other packages add subcommands through this entry-point group: each entry names a
# function that takes the subparsers action and adds its parser (with a `func` default),
# as `evals.cli:add_eval_parser` adds `eval`. So the offline eval plugs into the service;
# the service never imports it.
COMMANDS_GROUP = "interest_tracker.commands"
BUILTIN_COMMANDS = ("serve", "tenants", "refresh", "train", "worker")


def _settings(data_dir: str | None = None) -> Settings:
    if data_dir is not None:
        return Settings(data_dir=Path(data_dir))
    return Settings()


def _sessions(settings: Settings) -> sessionmaker[Session]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    return make_sessionmaker(engine)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve at once; on the first start the demo loads in the background (its
    progress at /readyz and in the inspector at /ui)."""
    import uvicorn

    from service.llm.runtime import LLMRuntime
    from service.main import create_app

    settings = _settings(args.data_dir)
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"interest-tracker {'(development)' if settings.dev_tenant else ''}".strip())
    print(f"data folder: {settings.data_dir.resolve()}", flush=True)
    sessions = _sessions(settings)
    if settings.dev_tenant:
        with sessions() as session:
            key = ensure_dev_key(session, settings)
        print(f"development API key (tenant '{DEV_TENANT}'): {key}")
        print(f"  also in {settings.data_dir / DEV_KEY_FILE}", flush=True)
    # The app opens its own engine; this one served the start-up work only.
    engine = sessions.kw["bind"]
    engine.dispose()
    llm = LLMRuntime(settings)
    try:
        print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs, "
              f"inspector: http://{host}:{port}/ui)", flush=True)
        if settings.demo_enabled:
            print(f"demo: checked and, if needed, loaded in the background; progress at "
                  f"http://{host}:{port}/readyz and /ui", flush=True)
        uvicorn.run(create_app(settings, llm=llm, demo=settings.demo_enabled),
                    host=host, port=port, log_level="info")
    finally:
        llm.close()
    return 0


def cmd_tenants_create(args: argparse.Namespace) -> int:
    settings = _settings(args.data_dir)
    with _sessions(settings)() as session:
        try:
            tenant, key = create_tenant(session, args.name)
        except TenantError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"created tenant {tenant.name!r}; its API key (shown once):")
    print(key)
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Refresh one user's or every user's profile in this process, with a progress bar;
    with --ray, every user's as Ray tasks on a cluster (see `cmd_refresh_ray`)."""
    from service.profiles.runtime import ProfileRuntime
    from service.profiles.worker import refresh_users_now

    if args.ray is not None and args.user is not None:
        print("error: --ray refreshes a whole tenant (--all)", file=sys.stderr)
        return 2
    settings = _settings(args.data_dir)
    if args.ray is not None:
        return cmd_refresh_ray(args, settings)
    sessions = _sessions(settings)
    with sessions() as session:
        tenant = tenant_by_name(session, args.tenant)
        if tenant is None:
            print(f"error: no tenant named {args.tenant!r}", file=sys.stderr)
            return 2
        query = select(User.id).where(User.tenant_id == tenant.id).order_by(User.id)
        if args.user is not None:
            query = query.where(User.user_id == args.user)
        user_pks = list(session.scalars(query))
    if not user_pks:
        what = f"user {args.user!r}" if args.user is not None else "users"
        print(f"error: no {what} in tenant {args.tenant!r}", file=sys.stderr)
        return 2

    rt = ProfileRuntime.from_settings(settings)
    llm = rt.llm
    try:
        _, failures = refresh_users_now(sessions, user_pks, rt, "cli")
    finally:
        llm.close()
    for line in failures:
        print(f"failed {line}", file=sys.stderr)
    print(f"refreshed {len(user_pks) - len(failures)} of {len(user_pks)} profiles")
    return 1 if failures else 0


def cmd_refresh_ray(args: argparse.Namespace, settings: Settings) -> int:
    """Refresh every user of a tenant as Ray tasks, at most --concurrency at once.

    Resumable: users refreshed since the open batch began are skipped (the batch marker
    in the data folder, `service.batch.service`).
    """
    from tqdm import tqdm

    from service.batch import service as batch
    from service.core.db import utcnow

    if settings.chroma_url is None:
        print("error: --ray needs a Chroma server (INTEREST_CHROMA_URL): the embedded "
              "Chroma folder belongs to one process", file=sys.stderr)
        return 2
    concurrency = args.concurrency or settings.llm_max_concurrency
    sessions = _sessions(settings)
    with sessions() as session:
        tenant = tenant_by_name(session, args.tenant)
        if tenant is None:
            print(f"error: no tenant named {args.tenant!r}", file=sys.stderr)
            return 2
        total = session.scalar(select(func.count(User.id)).where(User.tenant_id == tenant.id))
        path = batch.batch_path(settings, tenant.id)
        run, resumed = batch.open_batch(path, tenant.id, utcnow(), restart=args.restart,
                                        resume=args.resume)
        due = batch.users_due(session, tenant.id, run.started_at)
    sessions.kw["bind"].dispose()
    if not total:
        print(f"error: no users in tenant {args.tenant!r}", file=sys.stderr)
        return 2
    skipped = int(total) - len(due)
    print(f"batch started {run.started_at.isoformat(timespec='seconds')}"
          f"{' (resumed)' if resumed else ''}: {len(due)} of {total} users due, "
          f"{skipped} already refreshed; at most {concurrency} at once", flush=True)
    failures: list[str] = []
    peak = 0
    if due:
        started_ray = batch.connect(args.ray, num_cpus=args.num_cpus)
        try:
            with tqdm(total=len(due), desc="refreshing profiles (ray)", unit="user") as bar:
                def done(results: list[batch.RefreshResult]) -> None:
                    failures.extend(f"{r.user_id}: {r.error}" for r in results if r.error)
                    bar.update(len(results))

                results = batch.refresh_on_ray(batch.portable_settings(settings), due,
                                               concurrency=concurrency,
                                               users_per_task=args.users_per_task,
                                               on_done=done)
            peak = batch.max_in_flight(results)
        finally:
            if started_ray:
                batch.shutdown()
    for line in failures:
        print(f"failed {line}", file=sys.stderr)
    if not failures:
        batch.finish_batch(path, run, utcnow())
    print(f"refreshed {len(due) - len(failures)} of {len(due)} due profiles "
          f"({skipped} skipped as already refreshed in this batch); "
          f"at most {peak} refreshes overlapped")
    return 1 if failures else 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the tenant's recommender models now, with a progress bar; prints the
    new version's metadata as JSON on the last line. With --ray the training runs as one
    Ray task on the cluster; the output is the same."""
    from service.batch import service as batch

    settings = _settings(args.data_dir)
    fields = batch.portable_settings(settings)
    if args.ray is None:
        outcome = batch.train_named_tenant(fields, args.tenant)
    else:
        started_ray = batch.connect(args.ray)
        try:
            outcome = batch.train_on_ray(fields, args.tenant)
        finally:
            if started_ray:
                batch.shutdown()
    for line in outcome.messages:
        print(line, file=sys.stderr)
    if outcome.meta_json is not None:
        print(outcome.meta_json)
    return outcome.code


def cmd_worker(args: argparse.Namespace) -> int:
    """Run refresh and training jobs beside the API until SIGTERM or SIGINT (the job in
    hand is finished first), or with --once until nothing is runnable."""
    import json
    import logging
    import signal

    from service.profiles.runtime import ProfileRuntime
    from service.profiles.worker import RefreshWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    settings = _settings(args.data_dir)
    sessions = _sessions(settings)
    rt = ProfileRuntime.from_settings(settings)
    llm = rt.llm
    worker = RefreshWorker(sessions, rt)
    try:
        if args.once:
            counts = {**worker.run_once(), **worker.train_once(),
                      "jobs_pruned": worker.prune_jobs()}
            print(json.dumps(counts))
            return 0
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.request_stop())
        print(f"worker {worker.owner}: polling every {settings.refresh_poll_seconds:g} s; "
              "SIGTERM or Ctrl-C stops it after the job in hand", flush=True)
        worker.serve(wait_first=False)
        print(f"worker {worker.owner}: stopped", flush=True)
        return 0
    finally:
        llm.close()
        sessions.kw["bind"].dispose()


def _ray_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="run on Ray: the cluster at ADDRESS (host:port, or 'auto'), "
                             "or without it a Ray instance of its own on loopback")


def plugin_commands() -> list[EntryPoint]:
    """The installed `interest_tracker.commands` entry points, by name."""
    return sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name)


def _add_plugin(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                plugin: EntryPoint) -> None:
    try:
        add_parser = plugin.load()
    except ModuleNotFoundError as exc:
        # The distribution declares the entry point but was built without its package
        # (the API image copies service/ only, not evals/): no such command there.
        if exc.name != plugin.module.partition(".")[0]:
            raise
        return
    add_parser(sub)


def build_parser(plugins: Iterable[EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The built-in commands and those of `plugins` (default: every installed one)."""
    parser = argparse.ArgumentParser(prog="interest-tracker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir")
    serve.set_defaults(func=cmd_serve)

    tenants = sub.add_parser("tenants", help="manage tenants")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    create = tenants_sub.add_parser("create", help="create a tenant; prints its API key last")
    create.add_argument("name")
    create.add_argument("--data-dir")
    create.set_defaults(func=cmd_tenants_create)

    refresh = sub.add_parser("refresh", help="refresh profiles now (one user or all)")
    who = refresh.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="the platform's user id")
    who.add_argument("--all", action="store_true", help="every user of the tenant")
    refresh.add_argument("--tenant", required=True, help="tenant name")
    refresh.add_argument("--data-dir")
    _ray_argument(refresh)
    refresh.add_argument("--concurrency", type=int, metavar="N",
                         help="with --ray: refreshes in flight at most (default: "
                              "INTEREST_LLM_MAX_CONCURRENCY, what the LLM server takes)")
    refresh.add_argument("--users-per-task", type=int, default=4, metavar="N",
                         help="with --ray: users one Ray task refreshes in turn (default 4)")
    refresh.add_argument("--num-cpus", type=int, metavar="N",
                         help="with --ray and no address: CPUs of the local Ray instance "
                              "(default: this machine's)")
    again = refresh.add_mutually_exclusive_group()
    again.add_argument("--restart", action="store_true",
                       help="with --ray: start a new batch even if the last one is unfinished")
    again.add_argument("--resume", action="store_true",
                       help="with --ray: continue the last batch even if it finished (only "
                            "users not refreshed since it began)")
    refresh.set_defaults(func=cmd_refresh)

    train = sub.add_parser("train", help="train the tenant's recommender models now")
    train.add_argument("--tenant", required=True, help="tenant name")
    train.add_argument("--data-dir")
    _ray_argument(train)
    train.set_defaults(func=cmd_train)

    worker = sub.add_parser("worker", help="run refresh and training jobs (beside the API)")
    worker.add_argument("--once", action="store_true",
                        help="queue what is due, run every runnable job, then exit")
    worker.add_argument("--data-dir")
    worker.set_defaults(func=cmd_worker)

    for plugin in plugin_commands() if plugins is None else plugins:
        _add_plugin(sub, plugin)
    return parser


def main(argv: Sequence[str] | None = None, plugins: Iterable[EntryPoint] | None = None) -> int:
    """Run one command. A built-in command loads no plugin, so `serve` and the worker
    never import the eval harness (nor its plotting and baseline libraries)."""
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    args = build_parser([] if command in BUILTIN_COMMANDS else plugins).parse_args(words)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
