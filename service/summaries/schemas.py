"""The summarizer's output contract, and what the API shows of summary runs."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

# Bounds keep the longest possible answer (~550 tokens) well under the output budget;
# on a CPU every output token costs ~40 ms with the embedded model.
MAX_FACETS = 5
MAX_EVIDENCE = 6
LABEL_MAX = 60
DESCRIPTION_MAX = 120
NARRATIVE_MAX = 300

REFERENCE_ONLY = re.compile(r"^(E\d+[\s,;/&and]*)+$", re.IGNORECASE)

Horizon = Literal["short", "long"]
Polarity = Literal["like", "avoid"]


def clean_text(value: str, limit: int) -> str:
    """Printable, single-spaced, bounded; quotes and brackets trimmed from the ends."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in value)
    text = re.sub(r"\s+", " ", text).strip().strip("\"'`*#<>[]{}()").strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:-") or text[:limit]
    return text


class InterestFacet(BaseModel):
    """One interest as the LLM states it; evidence holds event ids once validated."""

    label: str = Field(min_length=2, max_length=LABEL_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    strength: float = Field(ge=0.0, le=1.0)
    horizon: Horizon = "short"
    polarity: Polarity = "like"
    evidence: list[str] = Field(min_length=1, max_length=MAX_EVIDENCE)

    @field_validator("strength", mode="before")
    @classmethod
    def _bounded_strength(cls, value: Any) -> Any:
        # Grammars do not enforce float bounds; a model may answer 80 for 0.8.
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
            if 1.0 < value <= 100.0:
                value /= 100.0
            return min(max(value, 0.0), 1.0)
        return value

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


class InterestSummary(BaseModel):
    facets: list[InterestFacet] = Field(max_length=MAX_FACETS)
    narrative: str = Field(default="", max_length=NARRATIVE_MAX)

    @field_validator("narrative", mode="before")
    @classmethod
    def _clean_narrative(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        # Small models loop; a sentence said twice is said once.
        sentences = dict.fromkeys(s.strip() for s in re.split(r"(?<=[.!?])\s+", value))
        return clean_text(" ".join(s for s in sentences if s), NARRATIVE_MAX)


def summary_json_schema(evidence_refs: list[str]) -> dict[str, Any]:
    """The JSON schema sent as `response_format`; evidence may only name given refs.

    Bounds matter: without maxItems/maxLength a small model repeats itself until it
    runs out of tokens.
    """
    ref_items: dict[str, Any] = {"type": "string"}
    if evidence_refs:
        ref_items["enum"] = evidence_refs
    return {
        "title": "InterestSummary",
        "description": "A person's interests, each backed by event references.",
        "type": "object",
        "properties": {
            "facets": {
                "type": "array",
                "maxItems": MAX_FACETS,
                "items": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string", "maxLength": LABEL_MAX},
                        "description": {"type": "string", "maxLength": DESCRIPTION_MAX},
                        "strength": {"type": "number", "minimum": 0, "maximum": 1},
                        "horizon": {"type": "string", "enum": ["short", "long"]},
                        "polarity": {"type": "string", "enum": ["like", "avoid"]},
                        "evidence": {"type": "array", "items": ref_items, "minItems": 1,
                                     "maxItems": MAX_EVIDENCE},
                    },
                    "required": ["label", "description", "strength", "horizon", "polarity",
                                 "evidence"],
                    "additionalProperties": False,
                },
            },
            "narrative": {"type": "string", "maxLength": NARRATIVE_MAX},
        },
        "required": ["facets", "narrative"],
        "additionalProperties": False,
    }


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


class UserStatus(BaseModel):
    user_id: str
    stale: bool = Field(description="new events since the last successful summary")
    events_since_refresh: int
    event_count: int
    last_run: SummaryRunOut | None
