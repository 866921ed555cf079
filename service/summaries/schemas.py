"""The summarizer's output contract, and what the API shows of summary runs."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.core.schemas import DESCRIPTION_MAX, LABEL_MAX, Horizon, Polarity

# One small call per group: a short label and one sentence keep each answer near 40
# output tokens (on a CPU every output token costs ~40 ms with the embedded model).
MAX_LIKE_GROUPS = 6
MAX_AVOID_GROUPS = 2
MAX_FACETS = MAX_LIKE_GROUPS + MAX_AVOID_GROUPS
MAX_EVIDENCE = 2000  # a group's events, all of them (summary_max_events at most)
NARRATIVE_MAX = 300
# What the model may write: tighter than what the profile can hold (user edits).
NAME_LABEL_MAX = 48
NAME_DESCRIPTION_MAX = 64
NAME_NARRATIVE_MAX = 220
TOP_TAGS = 8
EXAMPLE_TITLES = 3

REFERENCE_ONLY = re.compile(r"^(E\d+[\s,;/&and]*)+$", re.IGNORECASE)

LabelSource = Literal["model", "fallback"]


def clean_text(value: str, limit: int) -> str:
    """Printable, single-spaced, bounded; quotes and brackets trimmed from the ends."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in value)
    text = re.sub(r"\s+", " ", text).strip().strip("\"'`*#<>[]{}()").strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:-") or text[:limit]
    return text


class GroupStats(BaseModel):
    """What grouping found out about one group of events (exact, no model involved).

    `example_titles` are for people (the UI, traces); they never reach the naming prompt.
    """

    count: int = Field(ge=1)
    share: float = Field(ge=0.0, le=1.0,
                         description="of all the events this run grouped (both polarities)")
    event_types: dict[str, int]
    mean_rating: float | None = None
    first_ts: datetime
    last_ts: datetime
    top_tags: dict[str, int] = Field(description="tags, genres and search terms, by events")
    top_categories: dict[str, int] = Field(default_factory=dict)
    example_titles: list[str] = Field(default_factory=list, max_length=EXAMPLE_TITLES)
    flagged: int = Field(default=0, ge=0,
                         description="events whose text reads as instructions to a model")


class InterestFacet(BaseModel):
    """One named group of events: evidence and polarity from grouping, words from the model
    (or, when its words fail the label check, from the group's top tags)."""

    label: str = Field(min_length=2, max_length=LABEL_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    strength: float = Field(ge=0.0, le=1.0, description="the group's share of the events read")
    horizon: Horizon = "short"
    polarity: Polarity = "like"
    evidence: list[str] = Field(min_length=1, max_length=MAX_EVIDENCE)
    label_source: LabelSource = "model"
    noise: bool = Field(default=False, description="the model's view; kept for the trace")
    group: GroupStats | None = None

    @field_validator("label", mode="before")
    @classmethod
    def _clean_label(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        label = clean_text(value, LABEL_MAX)
        if sum(ch.isalnum() for ch in label) < 2:
            raise ValueError("a label needs at least two letters or digits")
        if REFERENCE_ONLY.match(label):
            raise ValueError("a label must name the interest, not cite an event reference")
        return label

    @field_validator("description", mode="before")
    @classmethod
    def _clean_description(cls, value: Any) -> Any:
        return clean_text(value, DESCRIPTION_MAX) if isinstance(value, str) else value


def dedupe_sentences(value: str) -> str:
    """Small models loop; a sentence said twice is said once."""
    sentences = dict.fromkeys(s.strip() for s in re.split(r"(?<=[.!?])\s+", value))
    return " ".join(s for s in sentences if s)


class InterestSummary(BaseModel):
    facets: list[InterestFacet] = Field(max_length=MAX_FACETS)
    narrative: str = Field(default="", max_length=NARRATIVE_MAX)
    narrative_source: LabelSource = "model"
    prompts: dict[str, str] = Field(default_factory=dict, description="name -> version used")

    @field_validator("narrative", mode="before")
    @classmethod
    def _clean_narrative(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return clean_text(dedupe_sentences(value), NARRATIVE_MAX)


# --- what the model writes (`service.llm.structured.response_schema` derives the
# `response_format` schemas from these) ------------------------------------------------


class GroupName(BaseModel):
    """The model's name for one group of events (prompts/name_interest_group.yaml)."""

    model_config = ConfigDict(extra="forbid", title="GroupName")

    label: str = Field(min_length=3, max_length=NAME_LABEL_MAX,
                       description="2-6 words naming the topic")
    description: str = Field(min_length=3, max_length=NAME_DESCRIPTION_MAX,
                             description="one sentence")
    horizon: Horizon
    noise: bool = Field(description="true when the group shows no common topic")

    @field_validator("label", mode="before")
    @classmethod
    def _clean_label(cls, value: Any) -> Any:
        return clean_text(value, NAME_LABEL_MAX) if isinstance(value, str) else value

    @field_validator("description", mode="before")
    @classmethod
    def _clean_description(cls, value: Any) -> Any:
        return clean_text(value, NAME_DESCRIPTION_MAX) if isinstance(value, str) else value


class ProfileNarrative(BaseModel):
    """The model's short narrative over the named facets (prompts/narrate_profile.yaml)."""

    model_config = ConfigDict(extra="forbid", title="ProfileNarrative")

    narrative: str = Field(min_length=10, max_length=NAME_NARRATIVE_MAX)

    @field_validator("narrative", mode="before")
    @classmethod
    def _clean(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return clean_text(dedupe_sentences(value), NAME_NARRATIVE_MAX)


class SummaryRunOut(BaseModel):
    """One run of the summarizer, successful or not."""

    run_id: int
    status: Literal["ok", "failed"]
    created_at: datetime
    model: str
    prompt_name: str
    prompt_version: str
    prompt_tokens: int
    output_tokens: int
    latency_ms: int
    attempts: int
    events_read: int
    first_event_ts: datetime | None
    last_event_ts: datetime | None
    first_event_id: str | None
    last_event_id: str | None
    summary: InterestSummary | None
    error_code: Literal["llm_unavailable", "llm_invalid_output"] | None
    error: str | None


class SummaryRunList(BaseModel):
    runs: list[SummaryRunOut]
    next_cursor: str | None = Field(description="pass as `cursor` for older runs")


class UserStatus(BaseModel):
    user_id: str
    stale: bool = Field(description="new events since the last successful summary")
    events_since_refresh: int
    event_count: int
    last_run: SummaryRunOut | None
