from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from service.core.schemas import ExternalId

MAX_MESSAGE_CHARS = 2000
MAX_HISTORY_CHARS = 4000  # an earlier answer may be longer than a question
MAX_HISTORY_TURNS = 20
# What an answer says when the trace does not hold what was asked (the prompt asks the
# model for exactly this, and the deterministic answer starts with it).
DECLINE = "The trace does not say."

AnswerSource = Literal["model", "fallback"]


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL; refusing it here keeps the store from failing later.
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


Message = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_MESSAGE_CHARS),
    AfterValidator(_no_nul),
]
HistoryText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_HISTORY_CHARS),
    AfterValidator(_no_nul),
]
ConversationId = Annotated[str, StringConstraints(pattern=r"^conv_[0-9a-f]{32}$")]


class HistoryTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: HistoryText


class ChatRequest(BaseModel):
    """A question about one recommendation list, optionally about one of its items."""

    model_config = ConfigDict(extra="forbid")

    message: Message = Field(description="the question, e.g. 'Why was Dune recommended?'")
    item_id: ExternalId | None = Field(
        default=None, description="an item of this list the question is about")
    history: list[HistoryTurn] | None = Field(
        default=None, max_length=MAX_HISTORY_TURNS,
        description="earlier turns, oldest first; without it, those stored under "
                    "`conversation_id` are used")
    conversation_id: ConversationId | None = Field(
        default=None, description="continue a conversation this endpoint returned")


class ChatAnswer(BaseModel):
    """The answer after its citations were checked against the trace."""

    recommendation_id: str
    conversation_id: str
    turn_id: str
    item_id: str | None
    answer: str = Field(description=(
        "cites evidence as [event id]; when the trace does not hold the answer it says "
        "'The trace does not say.'"))
    cited_event_ids: list[str] = Field(
        description="evidence ids the answer cites, every one of them in the trace")
    dropped_citations: list[str] = Field(
        description="ids the model cited that are not evidence in the trace; removed")
    grounded: bool = Field(description=(
        "every citation is trace evidence and the answer either cites some or declines"))
    source: AnswerSource = Field(description=(
        "model: the model's checked answer; fallback: the model neither cited the trace "
        "nor declined, so the decline phrase and the trace's own reason are given"))
    model: str
    prompt_tokens: int | None
    output_tokens: int | None
    created_at: datetime


class ChatTurnOut(ChatAnswer):
    question: str
    streamed: bool


class ChatTurnsOut(BaseModel):
    recommendation_id: str
    turns: list[ChatTurnOut] = Field(description="oldest first")
    next_cursor: str | None = Field(default=None, description="the next page's cursor; "
                                    "null on the last page")
