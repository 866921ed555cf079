"""Tenants: a catalog version, a new random token whenever the tenant's items change.

Serving keeps catalog rows in memory per tenant (`recommend.candidates.CATALOG_CACHE`) and uses them
only while the token it read with the tenant is unchanged; every write to the items
table sets a new token in the same transaction.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("catalog_version", sa.String(32), nullable=True))
    tenants = sa.table("tenants", sa.column("id", sa.Integer()),
                       sa.column("catalog_version", sa.String(32)))
    connection = op.get_bind()
    for (tenant_id,) in connection.execute(sa.select(tenants.c.id)).all():
        connection.execute(tenants.update().where(tenants.c.id == tenant_id)
                           .values(catalog_version=uuid.uuid4().hex))
    with op.batch_alter_table("tenants") as batch:
        batch.alter_column("catalog_version", existing_type=sa.String(32), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("catalog_version")
