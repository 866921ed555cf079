"""Jobs: refresh and training work leased by workers (several processes share it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.core.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "tenant_id", sa.Integer(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE", name="fk_jobs_tenant_id_tenants"),
            nullable=False,
        ),
        sa.Column(
            "user_pk", sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_jobs_user_pk_users"),
            nullable=True,
        ),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("open_key", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("open_key", name="uq_jobs_open_key"),
    )
    op.create_index("ix_jobs_runnable", "jobs", ["state", "next_attempt_at"])
    op.create_index("ix_jobs_key", "jobs", ["key"])


def downgrade() -> None:
    op.drop_index("ix_jobs_key", table_name="jobs")
    op.drop_index("ix_jobs_runnable", table_name="jobs")
    op.drop_table("jobs")
