"""Items waiting to be embedded, as a partial index: the worker's pass and the tenant
overview find or count them without reading every item of the catalog.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# As `service.catalog.models.pending_index()` compiles today (a migration keeps its own copy).
PENDING_SQL = "indexed_hash IS NULL OR text_hash IS NULL OR indexed_hash != text_hash"


def upgrade() -> None:
    op.create_index("ix_items_pending", "items", ["tenant_id"],
                    sqlite_where=sa.text(PENDING_SQL), postgresql_where=sa.text(PENDING_SQL))


def downgrade() -> None:
    op.drop_index("ix_items_pending", table_name="items")
