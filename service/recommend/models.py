from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, JSONType, UTCDateTime


class RecommendationTrace(Base):
    """Everything one recommendation list was computed from, so it can be explained later.

    The trace is a snapshot: facets with the strengths they had at `created_at`, every
    candidate with its per-facet similarities, and the items returned with their
    explanations. What the user did afterwards is not copied in; it is read from the
    events that carry this `recommendation_id`.
    """

    __tablename__ = "recommendation_traces"
    __table_args__ = (
        UniqueConstraint("tenant_id", "recommendation_id"),
        Index("ix_recommendation_traces_user", "user_pk", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    recommendation_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    facets: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # Counts of what retrieval saw but could not offer (consumed, outside the category).
    excluded: Mapped[dict[str, Any]] = mapped_column(JSONType)
