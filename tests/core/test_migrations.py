"""`alembic upgrade head` on an empty database builds exactly the models' schema, and
the migrations are frozen: none imports a domain's models."""

from __future__ import annotations

import ast

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.core.db import MIGRATIONS_DIR, Base, alembic_config, make_engine, migrate
from service.models import load_all_models


def test_migrations_build_the_models_schema(database_url: str) -> None:
    load_all_models()
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_migrations_import_only_shared_column_types() -> None:
    for path in sorted((MIGRATIONS_DIR / "versions").glob("0*.py")):
        imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        domain = {m for m in imported if m.startswith("service.") and m != "service.core.db"}
        assert not domain, f"{path.name} imports {sorted(domain)}"


def test_upgrading_a_database_with_data_keeps_every_row(database_url: str) -> None:
    """SQLite rebuilds a table to alter it; with foreign keys on, dropping the old
    `tenants` would cascade to everything a tenant owns. 0008 alters `tenants`."""
    load_all_models()
    engine = make_engine(database_url)
    try:
        command.upgrade(alembic_config(engine), "0007")
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO tenants (id, name, created_at) "
                                 "VALUES (1, 'acme', '2026-01-01 00:00:00')")
            conn.exec_driver_sql(
                "INSERT INTO api_keys (tenant_id, key_hash, prefix, created_at) "
                "VALUES (1, 'h', 'p', '2026-01-01 00:00:00')")
            conn.exec_driver_sql(
                "INSERT INTO items (tenant_id, item_id, title, tags, attributes, "
                "content_hash, created_at, updated_at) VALUES (1, 'i1', 'T', '[]', '{}', "
                "'c', '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
        migrate(engine)
        with engine.connect() as conn:
            counts = [conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
                      for t in ("tenants", "api_keys", "items")]
            token = conn.exec_driver_sql("SELECT catalog_version FROM tenants").scalar()
            if engine.dialect.name == "sqlite":  # on again for the app's connections
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert counts == [1, 1, 1]
        assert isinstance(token, str) and len(token) == 32
    finally:
        engine.dispose()


def test_pending_items_are_found_through_their_partial_index(database_url: str) -> None:
    """The worker's pass and the tenant overview find the items waiting to be embedded
    (never indexed, text changed, no text hash yet) by `ix_items_pending`, not by
    reading every item: the queries carry the index's own predicate."""
    from sqlalchemy import func, insert, select

    from service.catalog.models import Item, pending_index

    load_all_models()
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO tenants (id, name, created_at, catalog_version) "
                                 "VALUES (1, 'acme', '2026-01-01', 'a'), "
                                 "(2, 'beta', '2026-01-01', 'b')")
            for tenant, item_id, text_hash, indexed in [
                    (1, "fresh", "t1", "t1"), (1, "never", "t2", None),
                    (1, "changed", "t3", "old"), (1, "unhashed", None, "t4"),
                    (2, "other", "t5", None), (2, "done", "t6", "t6")]:
                conn.execute(insert(Item).values(
                    tenant_id=tenant, item_id=item_id, title=item_id, tags=[],
                    attributes={}, content_hash="c", text_hash=text_hash,
                    indexed_hash=indexed))
        count = select(func.count()).select_from(Item).where(Item.tenant_id == 1,
                                                              pending_index())
        tenants = select(Item.tenant_id).where(pending_index()).distinct()
        with engine.connect() as conn:
            assert conn.execute(count).scalar() == 3
            assert sorted(conn.execute(tenants).scalars()) == [1, 2]
            for query in (count, tenants):
                sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
                if engine.dialect.name == "sqlite":
                    plan = str(conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).fetchall())
                else:  # six rows: a scan is cheaper, unless the planner is told otherwise
                    conn.exec_driver_sql("SET enable_seqscan = off")
                    plan = str(conn.exec_driver_sql("EXPLAIN " + sql).fetchall())
                assert "ix_items_pending" in plan, plan
    finally:
        engine.dispose()
