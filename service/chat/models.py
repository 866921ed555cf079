from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, JSONType, UTCDateTime


class ChatTurn(Base):
    """One question about a recommendation list and the checked answer it got.

    Kept with the trace it was answered from: the answer is only meaningful against
    that trace, and it quotes the user's activity, so it goes when the user does.
    """

    __tablename__ = "chat_turns"
    __table_args__ = (
        Index("ix_chat_turns_trace", "trace_pk", "id"),
        Index("ix_chat_turns_user", "user_pk"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    trace_pk: Mapped[int] = mapped_column(
        ForeignKey("recommendation_traces.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(String(64))
    turn_id: Mapped[str] = mapped_column(String(64), unique=True)
    item_id: Mapped[str | None] = mapped_column(String(128))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    cited_event_ids: Mapped[list[str]] = mapped_column(JSONType)
    dropped_citations: Mapped[list[str]] = mapped_column(JSONType)
    grounded: Mapped[bool]
    source: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    prompt_name: Mapped[str] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(20))
    streamed: Mapped[bool]
    prompt_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    latency_ms: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
