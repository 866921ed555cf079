"""Summary runs: every summarizer call, its cost, the events it read, its output or error.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.core.db import JSONType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "summary_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "tenant_id", sa.Integer(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE",
                          name="fk_summary_runs_tenant_id_tenants"),
            nullable=False,
        ),
        sa.Column(
            "user_pk", sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_summary_runs_user_pk_users"),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_name", sa.String(100), nullable=False),
        sa.Column("prompt_version", sa.String(20), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("events_read", sa.Integer(), nullable=False),
        sa.Column("first_event_id", sa.String(128), nullable=True),
        sa.Column("last_event_id", sa.String(128), nullable=True),
        sa.Column("first_event_ts", UTCDateTime(), nullable=True),
        sa.Column("last_event_ts", UTCDateTime(), nullable=True),
        sa.Column("summary", JSONType, nullable=True),
        sa.Column("error_code", sa.String(40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_summary_runs_user", "summary_runs", ["user_pk", "id"])


def downgrade() -> None:
    op.drop_index("ix_summary_runs_user", table_name="summary_runs")
    op.drop_table("summary_runs")
