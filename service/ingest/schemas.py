from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.core.schemas import ExternalId, ZonedTimestamp

EventType = Literal[
    "view", "click", "purchase", "rating", "like", "skip", "dislike", "search", "post", "declared"
]
# Events about a catalog item must name it; the others carry text instead.
ITEM_EVENT_TYPES: frozenset[str] = frozenset(
    {"view", "click", "purchase", "rating", "like", "skip", "dislike"}
)
TEXT_EVENT_TYPES: frozenset[str] = frozenset({"search", "post", "declared"})
MAX_TEXT_CHARS = 4000

EventText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)
]


class EventIn(BaseModel):
    """One user action. Without `event_id`, one is derived from the content."""

    model_config = ConfigDict(extra="forbid")

    event_id: ExternalId | None = None
    user_id: ExternalId
    type: EventType
    ts: ZonedTimestamp = Field(description="ISO-8601 with a time zone")
    item_id: ExternalId | None = None
    value: float | None = Field(default=None, allow_inf_nan=False)
    text: EventText | None = None
    recommendation_id: ExternalId | None = None


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(min_length=1)


class EventResult(BaseModel):
    index: int
    event_id: str
    status: Literal["created", "duplicate"]


class IngestResult(BaseModel):
    accepted: int = Field(description="events written by this request")
    duplicates: int = Field(description="events already stored or repeated in this batch")
    events: list[EventResult]


class EventOut(BaseModel):
    event_id: str
    user_id: str
    type: str
    ts: datetime
    item_id: str | None
    value: float | None
    text: str | None
    recommendation_id: str | None
    received_at: datetime


class EventPage(BaseModel):
    events: list[EventOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page")
