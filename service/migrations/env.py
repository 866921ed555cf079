"""Alembic environment: the engine comes from the caller (service.core.db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from service.core.db import Base
from service.models import load_all_models

load_all_models()
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if not isinstance(engine, Engine):
        raise RuntimeError("run migrations through service.core.db.migrate(engine)")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
