"""Chat turns: questions about a recommendation list and their checked answers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.core.db import JSONType, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_turns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "tenant_id", sa.Integer(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE", name="fk_chat_turns_tenant_id_tenants"),
            nullable=False,
        ),
        sa.Column(
            "user_pk", sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_chat_turns_user_pk_users"),
            nullable=False,
        ),
        sa.Column(
            "trace_pk", sa.Integer(),
            sa.ForeignKey("recommendation_traces.id", ondelete="CASCADE",
                          name="fk_chat_turns_trace_pk_recommendation_traces"),
            nullable=False,
        ),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(128), nullable=True),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("cited_event_ids", JSONType, nullable=False),
        sa.Column("dropped_citations", JSONType, nullable=False),
        sa.Column("grounded", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_name", sa.String(100), nullable=False),
        sa.Column("prompt_version", sa.String(20), nullable=False),
        sa.Column("streamed", sa.Boolean(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("turn_id", name="uq_chat_turns_turn_id"),
    )
    op.create_index("ix_chat_turns_trace", "chat_turns", ["trace_pk", "id"])
    op.create_index("ix_chat_turns_user", "chat_turns", ["user_pk"])


def downgrade() -> None:
    op.drop_index("ix_chat_turns_user", table_name="chat_turns")
    op.drop_index("ix_chat_turns_trace", table_name="chat_turns")
    op.drop_table("chat_turns")
