from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.profiles.schemas import EvidenceOut

# profile: facets only (the tenant has no trained models); hybrid: facets and the tenant's
# trained models; popular: nothing personal to go on.
Source = Literal["profile", "hybrid", "popular"]
# What an item's `because` rests on: one of the user's facets, or the user's own events
# through one of the tenant's models.
ReasonKind = Literal["facet", "co_occurrence", "transition", "sequence", "content"]
Scoring = Literal["facets", "ranker", "blend", "popular"]
ExplanationSource = Literal["template", "llm", "template_fallback"]
# recent: most used in the popularity window; all_time: most used ever;
# catalog: the rest of the catalog by item id, to fill the list.
PopularTier = Literal["recent", "all_time", "catalog"]


class Because(BaseModel):
    """The item's grounded reason (`reasons.best_reason`): a facet with its evidence, or
    the user's own events through a model (co-occurrence, transitions, the sequence
    model, content)."""

    kind: ReasonKind = Field(default="facet", description=(
        "facet: one of the user's interests; co_occurrence: people who liked the cited "
        "item liked this; transition: people who used the cited item used this next; "
        "sequence: it tends to follow the user's most recent activity; content: it is "
        "much like the cited item"))
    facet_id: str | None = Field(default=None, description="facet reasons only")
    label: str | None = Field(default=None, description="facet reasons only")
    strength: float | None = Field(
        default=None, description="facet reasons: the facet's strength decayed to `generated_at`")
    similarity: float | None = Field(
        default=None, description="facet reasons: cosine similarity of the facet and the item")
    evidence: list[EvidenceOut] = Field(description=(
        "the user's own events behind the reason: a facet's evidence, those closest to this "
        "item first, or the events a model's reason rests on"))


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    score: float = Field(description=(
        "hybrid: the learned ranker's score (or the fixed blend's without one); "
        "profile: max over like-facets of strength x similarity, minus avoid penalties; "
        "popular: the item's events in the popularity window, or over all time when the "
        "window had too few items; 0 for catalog items added to fill the list"))
    because: Because | None = Field(description="null when the item is only popular")
    explanation: str
    explanation_source: ExplanationSource


class RecommendationsOut(BaseModel):
    recommendation_id: str = Field(
        description="opaque; send it on feedback events as `recommendation_id`")
    user_id: str
    source: Source = Field(description=(
        "hybrid: from the user's interests and the tenant's trained models (co-occurrence, "
        "transitions, sequence, content, popularity), ranked together; "
        "profile: from the user's interests only (the tenant has no trained models yet); "
        "popular: the user has no active like-facets nor model candidates, "
        "so these are the tenant's recently popular items, then its popular items of all "
        "time, then other catalog items, each explanation saying which"))
    generated_at: datetime
    items: list[RecommendedItem]


class TraceModels(BaseModel):
    """The tenant artifact a hybrid list was made with."""

    version: str
    trained_at: str
    sources: list[str]
    ranker: str | None = Field(description="the learned ranker's version; null: fixed blend")
    feature_version: str
    heldout: dict[str, float] = Field(default_factory=dict)


class TraceParameters(BaseModel):
    k: int
    explain: Literal["template", "llm"]
    category: str | None
    pool: int = Field(description="candidates the like-facets shared, by strength")
    facet_floor: int
    fusion: Literal["max"]
    mmr_lambda: float
    avoid_penalty_from: float
    avoid_drop_from: float
    llm_explain_top: int = Field(description="how many of the first items the LLM explains")
    half_life_short_days: float
    half_life_long_days: float
    popular_window_days: int
    scoring: Scoring = Field(default="facets", description=(
        "ranker: the tenant's learned ranker; blend: the fixed blend of normalised source "
        "scores and facet similarity; facets: strength x similarity; popular: event counts"))
    models: TraceModels | None = Field(
        default=None, description="the tenant's trained models; null when it has none")
    candidates_per_source: int | None = None
    feature_names: list[str] | None = Field(
        default=None, description="the order of every candidate's `features`")
    blend_weights: dict[str, float] | None = None
    calibration: float = Field(default=0.0, description=(
        "weight of the tag-mix calibration of hybrid lists (0: off)"))
    calibration_target: dict[str, float] | None = Field(default=None, description=(
        "the profile's tag shares the list was calibrated to (null: not calibrated)"))
    unexplained_keep: float | None = Field(default=None, description=(
        "hybrid lists: the share of its relevance a candidate kept when none of its "
        "reasons reads as related to it (1: no discount; null: not a hybrid list)"))
    notes: list[str] = Field(default_factory=list, description="e.g. why models were not used")


class TraceFacet(BaseModel):
    facet_id: str
    label: str
    description: str
    polarity: Literal["like", "avoid"]
    horizon: Literal["short", "long"]
    pinned: bool
    strength: float = Field(description="decayed to the trace's time; what scoring used")
    stored_strength: float
    strength_at: datetime = Field(description="when `stored_strength` was set")
    evidence: list[str] = Field(description="the facet's evidence event ids")
    quota: int | None = Field(description="candidates this like-facet was asked for")


# What became of a traced candidate: in the list, dropped (an avoid-facet, or a score of
# zero or less on the profile path) or not picked.
CandidateStatus = Literal["returned", "dropped_avoid", "dropped_score", "not_selected"]


class TraceSourceHit(BaseModel):
    """What one source said about a candidate."""

    score: float
    rank: int
    via: str | None = Field(default=None, description="the user's event id that led to it")


class TraceCandidate(BaseModel):
    item_id: str
    title: str
    similarities: dict[str, float] = Field(description="cosine similarity per facet id")
    base_score: float = Field(description="best like-facet strength x similarity")
    avoid_penalty: float
    score: float
    best_facet: str | None
    sources: dict[str, TraceSourceHit] = Field(
        default_factory=dict, description="hybrid lists: each source that proposed the item")
    features: list[float] | None = Field(
        default=None, description="hybrid lists: the ranker's input row (`feature_names`)")
    reason: ReasonKind | None = Field(default=None, description="returned items: their reason")
    explained: bool | None = Field(
        default=None, description="hybrid lists: whether the candidate's reason reads as "
        "related to it (with `unexplained_keep` < 1, one that does not kept that share of "
        "its relevance); null where no reason was looked for")
    popular_events: int | None = Field(
        default=None, description="popular lists: the events counted in the item's tier")
    popular_tier: PopularTier | None = Field(
        default=None, description="popular lists: where the item came from")
    status: CandidateStatus
    mmr_rank: int | None = None
    mmr_objective: float | None = None


class FeedbackEvent(BaseModel):
    event_id: str
    type: str
    ts: datetime
    item_id: str | None
    value: float | None


class ExplanationCall(BaseModel):
    """One model call for an explanation, kept whether or not its answer was used."""

    prompt_name: str
    prompt_version: str
    model: str
    latency_ms: int
    prompt_tokens: int
    output_tokens: int
    cited: list[str] = Field(description="evidence ids the accepted answer cited")


class RecommendationExplanation(BaseModel):
    """Why an item was recommended, citing the activity that shows it."""

    # What the model writes (prompts/explain_recommendation.yaml). Each call narrows
    # `evidence` to the ids it gave (service/recommend/explain.py).
    model_config = ConfigDict(extra="forbid", title="RecommendationExplanation")

    explanation: str = Field(max_length=300)
    evidence: list[str] = Field(min_length=1)


class TraceItem(RecommendedItem):
    rank: int
    explanation_problem: str | None = Field(
        default=None, description="why an LLM explanation was not used")
    llm: ExplanationCall | None = None
    popular_tier: PopularTier | None = Field(
        default=None, description="popular lists: where the item came from")
    feedback: list[FeedbackEvent] = Field(
        description="the user's events on this item that carry this recommendation_id")


class TraceOut(BaseModel):
    recommendation_id: str
    user_id: str
    source: Source
    created_at: datetime
    parameters: TraceParameters
    facets: list[TraceFacet]
    candidates: list[TraceCandidate] = Field(description="best score first")
    excluded: dict[str, int] = Field(
        description="what retrieval found but could not offer, by reason")
    items: list[TraceItem]
    other_feedback: list[FeedbackEvent] = Field(
        description="events carrying this recommendation_id about items not in the list")
