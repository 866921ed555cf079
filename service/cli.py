"""The `interest-tracker` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.core.config import Settings
from service.core.db import make_engine, make_sessionmaker, migrate
from service.core.security import hash_api_key
from service.tenants.models import ApiKey
from service.tenants.service import TenantError, add_api_key, create_tenant, tenant_by_name

DEV_TENANT = "dev"


def _settings(data_dir: str | None = None) -> Settings:
    if data_dir is not None:
        return Settings(data_dir=Path(data_dir))
    return Settings()


def _sessions(settings: Settings) -> sessionmaker[Session]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    return make_sessionmaker(engine)


def ensure_dev_key(settings: Settings) -> str:
    """The development tenant's key, kept in the data folder so it survives restarts."""
    key_file = settings.data_dir / "dev-api-key"
    with _sessions(settings)() as session:
        tenant = tenant_by_name(session, DEV_TENANT)
        if tenant is None:
            tenant, key = create_tenant(session, DEV_TENANT)
        else:
            key = key_file.read_text().strip() if key_file.exists() else ""
            known = session.scalar(select(ApiKey.id).where(
                ApiKey.tenant_id == tenant.id, ApiKey.key_hash == hash_api_key(key),
                ApiKey.revoked_at.is_(None))) if key else None
            if known is None:
                key = add_api_key(session, tenant)
                session.commit()
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    return key


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.main import create_app

    settings = _settings(args.data_dir)
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"interest-tracker {'(development)' if settings.dev_tenant else ''}".strip())
    print(f"data folder: {settings.data_dir.resolve()}")
    if settings.dev_tenant:
        key = ensure_dev_key(settings)
        print(f"development API key (tenant '{DEV_TENANT}'): {key}")
        print(f"  also in {settings.data_dir / 'dev-api-key'}")
    print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
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
    """Refresh one user's or every user's profile in this process, with a progress bar."""
    from tqdm import tqdm

    from service.core.db import utcnow
    from service.core.errors import ApiError
    from service.llm.runtime import LLMRuntime
    from service.profiles.service import ProfileRuntime, refresh_profile
    from service.users.models import User
    from service.vectors.embeddings import embedder_for
    from service.vectors.store import VectorStore, client_for

    settings = _settings(args.data_dir)
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

    llm = LLMRuntime(settings)
    rt = ProfileRuntime(settings, llm, embedder_for(settings),
                        VectorStore(client_for(settings), settings.chroma_collection_prefix),
                        utcnow)
    failures: list[str] = []
    try:
        for user_pk in tqdm(user_pks, desc="refreshing profiles", unit="user"):
            with sessions() as session:
                user = session.get(User, user_pk)
                if user is None:
                    continue
                try:
                    refresh_profile(session, user, rt, trigger="cli")
                except ApiError as exc:
                    failures.append(f"{user.user_id}: {exc.code}: {exc.message}")
    finally:
        llm.close()
    for line in failures:
        print(f"failed {line}", file=sys.stderr)
    print(f"refreshed {len(user_pks) - len(failures)} of {len(user_pks)} profiles")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
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
    refresh.set_defaults(func=cmd_refresh)

    from evals.cli import add_eval_parser

    add_eval_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
