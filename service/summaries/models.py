from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, JSONType, UTCDateTime, utcnow


class SummaryRun(Base):
    """Every call of the summarizer, with what it read, what it cost and what it said."""

    __tablename__ = "summary_runs"
    __table_args__ = (Index("ix_summary_runs_user", "user_pk", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    prompt_name: Mapped[str] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(20))
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    latency_ms: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    events_read: Mapped[int] = mapped_column(default=0)
    first_event_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_event_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    first_event_ts: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_event_ts: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
