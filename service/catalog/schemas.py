from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from service.core.schemas import ExternalId

MAX_ATTRIBUTES_BYTES = 16_384

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=8000)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Category = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ItemIn(BaseModel):
    """A catalog item as the platform describes it; the text is what gets embedded."""

    model_config = ConfigDict(extra="forbid")

    item_id: ExternalId
    title: Title
    description: Description | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    category: Category | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict, description=f"Free-form JSON, at most {MAX_ATTRIBUTES_BYTES} bytes."
    )

    @field_validator("attributes")
    @classmethod
    def _bounded_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(json.dumps(value, allow_nan=False))
        except ValueError:
            raise ValueError("attributes must be plain JSON (no NaN or Infinity)") from None
        if size > MAX_ATTRIBUTES_BYTES:
            raise ValueError(f"attributes take {size} bytes as JSON; the limit is "
                             f"{MAX_ATTRIBUTES_BYTES}")
        return value


class ItemBatchIn(BaseModel):
    items: list[ItemIn] = Field(min_length=1)


class ItemOut(BaseModel):
    """A stored `Item` row without its bookkeeping columns."""

    model_config = ConfigDict(from_attributes=True)

    item_id: str
    title: str
    description: str | None
    tags: list[str]
    category: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ItemUpsertResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    indexed: int = Field(0, description="items (re-)embedded into the vector store")
    index_pending: int = Field(
        0, description="stored items whose vectors are not written yet (retried later)")
