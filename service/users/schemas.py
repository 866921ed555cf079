from __future__ import annotations

from pydantic import BaseModel


class UserDeleted(BaseModel):
    user_id: str
    events_deleted: int
