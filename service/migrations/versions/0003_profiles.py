"""Profile memory: current facets, one profile row per user, every version kept;
item text hashes so items are re-embedded only when their text changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.core.db import JSONType, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _tenant(table: str) -> sa.Column[int]:
    return sa.Column(
        "tenant_id", sa.Integer(),
        sa.ForeignKey("tenants.id", ondelete="CASCADE", name=f"fk_{table}_tenant_id_tenants"),
        nullable=False,
    )


def _user(table: str, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "user_pk", sa.Integer(),
        sa.ForeignKey("users.id", ondelete="CASCADE", name=f"fk_{table}_user_pk_users"),
        nullable=False, primary_key=primary_key,
    )


def upgrade() -> None:
    op.add_column("items", sa.Column("text_hash", sa.String(64), nullable=True))
    op.add_column("items", sa.Column("indexed_hash", sa.String(64), nullable=True))
    op.create_table(
        "profiles",
        _user("profiles", primary_key=True),
        _tenant("profiles"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("narrative", sa.Text(), nullable=False),
        sa.Column("refreshed_at", UTCDateTime(), nullable=True),
        sa.Column("read_through_event", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "profile_facets",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant("profile_facets"),
        _user("profile_facets"),
        sa.Column("facet_id", sa.String(40), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("strength", sa.Float(), nullable=False),
        sa.Column("strength_at", UTCDateTime(), nullable=False),
        sa.Column("horizon", sa.String(8), nullable=False),
        sa.Column("polarity", sa.String(8), nullable=False),
        sa.Column("evidence", JSONType, nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_reinforced", UTCDateTime(), nullable=False),
        sa.Column("reinforcements", sa.Integer(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("edited_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("tenant_id", "facet_id", name="uq_profile_facets_tenant_id_facet_id"),
    )
    op.create_index("ix_profile_facets_user", "profile_facets", ["user_pk"])
    op.create_table(
        "profile_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant("profile_versions"),
        _user("profile_versions"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("facets", JSONType, nullable=False),
        sa.Column("narrative", sa.Text(), nullable=False),
        sa.Column(
            "summary_run_id", sa.Integer(),
            sa.ForeignKey("summary_runs.id", ondelete="SET NULL",
                          name="fk_profile_versions_summary_run_id_summary_runs"),
            nullable=True,
        ),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("prompt_name", sa.String(100), nullable=True),
        sa.Column("prompt_version", sa.String(20), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("first_event_id", sa.String(128), nullable=True),
        sa.Column("last_event_id", sa.String(128), nullable=True),
        sa.Column("first_event_ts", UTCDateTime(), nullable=True),
        sa.Column("last_event_ts", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("user_pk", "version", name="uq_profile_versions_user_pk_version"),
    )


def downgrade() -> None:
    op.drop_table("profile_versions")
    op.drop_index("ix_profile_facets_user", table_name="profile_facets")
    op.drop_table("profile_facets")
    op.drop_table("profiles")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("indexed_hash")
        batch.drop_column("text_hash")
