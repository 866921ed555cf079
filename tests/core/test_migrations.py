"""`alembic upgrade head` on an empty database builds exactly the models' schema, and
the migrations are frozen: none imports a domain's models."""

from __future__ import annotations

import ast

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.core.db import MIGRATIONS_DIR, Base, make_engine, migrate
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
