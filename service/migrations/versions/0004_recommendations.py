"""Recommendation traces: what each list was computed from, readable afterwards.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.core.db import JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recommendation_traces",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "tenant_id", sa.Integer(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE",
                          name="fk_recommendation_traces_tenant_id_tenants"),
            nullable=False,
        ),
        sa.Column(
            "user_pk", sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE",
                          name="fk_recommendation_traces_user_pk_users"),
            nullable=False,
        ),
        sa.Column("recommendation_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("parameters", JSONType, nullable=False),
        sa.Column("facets", JSONType, nullable=False),
        sa.Column("candidates", JSONType, nullable=False),
        sa.Column("items", JSONType, nullable=False),
        sa.Column("excluded", JSONType, nullable=False),
        sa.UniqueConstraint("tenant_id", "recommendation_id",
                            name="uq_recommendation_traces_tenant_id_recommendation_id"),
    )
    op.create_index("ix_recommendation_traces_user", "recommendation_traces", ["user_pk", "id"])


def downgrade() -> None:
    op.drop_index("ix_recommendation_traces_user", table_name="recommendation_traces")
    op.drop_table("recommendation_traces")
