from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class UserDeleted(BaseModel):
    user_id: str
    events_deleted: int


class UserSummary(BaseModel):
    """One user as a list shows them: enough to pick whom to look at."""

    user_id: str
    created_at: datetime
    stale: bool = Field(description="new events since the last refresh")
    events_since_refresh: int
    profile_version: int = Field(description="0 until the first refresh")
    refreshed_at: datetime | None


class UserPage(BaseModel):
    users: list[UserSummary] = Field(description="by user id, ascending")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")
