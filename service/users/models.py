from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, UTCDateTime, utcnow


class User(Base):
    """A platform's user, known by the platform's own id within one tenant."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Refresh bookkeeping: ingest marks the user stale; the profile refresh clears it.
    events_since_refresh: Mapped[int] = mapped_column(default=0)
    stale: Mapped[bool] = mapped_column(default=False)
