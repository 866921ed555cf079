from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, JSONType, UTCDateTime, utcnow


class Profile(Base):
    """One row per user: the lock a refresh takes, and what the last refresh read."""

    __tablename__ = "profiles"

    user_pk: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(default=0)
    narrative: Mapped[str] = mapped_column(Text, default="")
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The newest event (by primary key) any refresh has read: later ones are "new".
    read_through_event: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProfileFacetRow(Base):
    """A facet's current state; strength is as of `strength_at` and decays at read time."""

    __tablename__ = "profile_facets"
    __table_args__ = (
        UniqueConstraint("tenant_id", "facet_id"),
        Index("ix_profile_facets_user", "user_pk"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    facet_id: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    strength: Mapped[float] = mapped_column(Float)
    strength_at: Mapped[datetime] = mapped_column(UTCDateTime)
    horizon: Mapped[str] = mapped_column(String(8))
    polarity: Mapped[str] = mapped_column(String(8))
    evidence: Mapped[list[str]] = mapped_column(JSONType, default=list)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_reinforced: Mapped[datetime] = mapped_column(UTCDateTime)
    reinforcements: Mapped[int] = mapped_column(default=0)
    pinned: Mapped[bool] = mapped_column(default=False)
    suppressed: Mapped[bool] = mapped_column(default=False)
    archived: Mapped[bool] = mapped_column(default=False)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ProfileVersion(Base):
    """A snapshot after every change, so a user's interests can be read back over time."""

    __tablename__ = "profile_versions"
    __table_args__ = (UniqueConstraint("user_pk", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column()
    trigger: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    facets: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    narrative: Mapped[str] = mapped_column(Text, default="")
    summary_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("summary_runs.id", ondelete="SET NULL"), nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    prompt_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    prompt_version: Mapped[str | None] = mapped_column(String(20), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    first_event_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_event_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    first_event_ts: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_event_ts: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
