from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.core.schemas import DESCRIPTION_MAX, LABEL_MAX


class EvidenceOut(BaseModel):
    """One of the user's own events behind a facet, or behind a recommendation's reason."""

    event_id: str
    type: str | None = Field(description="null when the event is no longer stored")
    ts: datetime | None
    item_id: str | None = None
    title: str | None = Field(default=None,
                              description="the item's title, when the event is about an item")
    text: str | None = Field(default=None, description="for searches, posts and declarations")


class FacetOut(BaseModel):
    facet_id: str
    label: str
    description: str
    strength: float = Field(description="decayed to `as_of`")
    horizon: Literal["short", "long"]
    polarity: Literal["like", "avoid"]
    reinforcements: int
    first_seen: datetime
    last_reinforced: datetime
    pinned: bool
    suppressed: bool
    evidence: list[EvidenceOut]


class ProfileOut(BaseModel):
    user_id: str
    version: int = Field(description="0 until the first refresh")
    as_of: datetime
    refreshed_at: datetime | None
    narrative: str
    stale: bool
    events_since_refresh: int
    facets: list[FacetOut] = Field(description="active facets, strongest first")
    suppressed: list[FacetOut] = Field(description="facets the user suppressed (never re-created)")


class VersionFacet(BaseModel):
    facet_id: str
    label: str
    description: str
    strength: float = Field(description="decayed to the version's time")
    horizon: str
    polarity: str
    evidence: list[str]
    reinforcements: int
    pinned: bool
    suppressed: bool
    archived: bool


class ProfileVersionOut(BaseModel):
    """A stored `ProfileVersion` row as it is, field for field."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    trigger: str = Field(description="refresh (API), worker, cli or edit")
    at: datetime
    narrative: str
    model: str | None
    prompt_name: str | None
    prompt_version: str | None
    summary_run_id: int | None
    prompt_tokens: int
    output_tokens: int
    first_event_id: str | None
    last_event_id: str | None
    first_event_ts: datetime | None
    last_event_ts: datetime | None
    facets: list[VersionFacet]


class ProfileHistory(BaseModel):
    user_id: str
    versions: list[ProfileVersionOut] = Field(description="newest first")
    next_before: int | None = Field(description="pass as `before` for older versions")
    next_cursor: str | None = Field(description="pass as `cursor` for older versions")


Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2,
                                         max_length=LABEL_MAX)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=DESCRIPTION_MAX)]


class FacetPatch(BaseModel):
    """A user's edit. Pinned facets stop decaying; suppressed ones never come back."""

    model_config = ConfigDict(extra="forbid")

    pinned: bool | None = None
    suppressed: bool | None = None
    label: Label | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> FacetPatch:
        if all(v is None for v in (self.pinned, self.suppressed, self.label, self.description)):
            raise ValueError("send at least one of pinned, suppressed, label, description")
        return self


class FacetDeleted(BaseModel):
    facet_id: str
    version: int


class FacetForecastOut(BaseModel):
    """One active facet now and over the forecast period (`service/profiles/forecast.py`)."""

    facet_id: str
    label: str
    polarity: Literal["like", "avoid"]
    horizon: Literal["short", "long"]
    pinned: bool
    strength: float = Field(description="now, decayed to `as_of`")
    decayed_strength: float = Field(description="mean over the period with decay alone")
    forecast_strength: float = Field(
        description="mean over the period with decay plus the damped reinforcement trend")
    trend_per_day: float = Field(
        description="strength recent reinforcement is expected to add per day, before decay")
    reinforcements_per_day: float = Field(description="creations and reinforcements per day "
                                                      "over the recent window")


class MixShare(BaseModel):
    facet_id: str
    label: str
    share: float = Field(description="this like-facet's share of the forecast mix")


class ProfileForecast(BaseModel):
    user_id: str
    version: int = Field(description="the profile version the forecast starts from; 0: none")
    as_of: datetime
    days: int = Field(description="length of the forecast period")
    period_end: datetime
    facets: list[FacetForecastOut] = Field(
        description="active facets (not archived, not suppressed), highest forecast first")
    mix: list[MixShare] = Field(
        description="like-facets' forecast strengths normalised to sum 1, largest first; "
                    "empty without like-facets")
