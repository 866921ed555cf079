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
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one; with foreign
            # keys on (every connection of ours, `core.db`), that DROP deletes every row
            # that points at it through ON DELETE CASCADE: a tenant's items, keys, users,
            # events. Off for the migration (it works outside a transaction), checked
            # and on again before the connection goes back to the pool.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left rows with broken foreign keys: "
                                       f"{broken[:5]}")
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


run_migrations_online()
