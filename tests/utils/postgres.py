"""Whether the machine's PostgreSQL can be reached, asked once per session."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get(
    "INTEREST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_unavailable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # the reason is shown in the skip message
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}: {exc}"
    return None


_PG_REASON: str | None | bool = False


def postgres_reason() -> str | None:
    global _PG_REASON
    if _PG_REASON is False:
        _PG_REASON = _postgres_unavailable()
    return _PG_REASON  # type: ignore[return-value]
