"""The interest summarizer: unread events grouped, each group named, a narrative on top.

1. The events no earlier refresh has read (the newest `summary_max_events`) are
   grouped deterministically (`grouping.py`); a group's events are its evidence.
2. The model names each group from its statistics only (`prompts/name_interest_group`,
   one small call per group, temperature from the settings, bounded output). A label
   or description that fails the checks of `labels.py`, or an answer still unusable
   after one repair turn, falls back to words built from the group's tags.
3. The model writes a short narrative from the facets' labels and descriptions
   (`prompts/narrate_profile`); one that fails the checks is replaced by a sentence
   built from the labels.
All calls share one token budget (`PROMPT_TOKEN_BUDGET`, `OUTPUT_TOKEN_BUDGET`): a
call that might not fit is not made, and its group keeps its deterministic words.

Failure never touches what is stored: only an unreachable model fails the run
(recorded, 503 `llm_unavailable`); the user stays stale and the events stay where
they are.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import httpx
import numpy as np
import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.catalog.service import tag_counts
from service.core.config import Settings
from service.core.errors import ApiError
from service.core.hashing import chunks
from service.ingest.models import Event
from service.llm.prompts import PromptFile, load_prompt
from service.llm.runtime import LLMRuntime
from service.llm.tokens import count_tokens
from service.profiles.models import Profile
from service.summaries.activity import Activity
from service.summaries.grouping import (
    EventGroup,
    TagWeights,
    Vector,
    group_events,
    is_text_event,
)
from service.summaries.injection import reads_as_instructions
from service.summaries.labels import (
    REFERENCE,
    description_problem,
    fallback_description,
    fallback_label,
    label_problem,
    names_a_title,
    stem,
    topic_words,
)
from service.summaries.models import SummaryRun
from service.summaries.schemas import (
    NARRATIVE_MAX,
    GroupName,
    InterestFacet,
    InterestSummary,
    LabelSource,
    ProfileNarrative,
    response_schema,
)
from service.users.models import User
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore

log = logging.getLogger(__name__)

NAME_PROMPT = "name_interest_group"
NARRATE_PROMPT = "narrate_profile"
REPAIR_PROMPT = "repair_json"
MAX_ATTEMPTS = 2  # the first answer and one repair
# Per refresh, all calls together (DESIGN.md §8: 100 new events, <= 1,200 / 250).
PROMPT_TOKEN_BUDGET = 1200
OUTPUT_TOKEN_BUDGET = 250
NAME_MAX_OUTPUT = 60  # a bounded GroupName answer is ~35-45 tokens
NARRATIVE_MAX_OUTPUT = 60
# Our tokenizer (cl100k) is not the served model's, and chat templates add a few
# tokens per message: estimates are padded so the budget holds on the server's count.
ESTIMATE_FACTOR = 1.2
TEMPLATE_TOKENS = 8
PROMPT_TAGS = 5
NOISE_BELOW = 3  # a group the model calls noise is dropped when it has fewer events

# Words a narrative may use beyond the facets' own.
NARRATIVE_WORDS = frozenset("""
enjoys enjoy loves love likes like prefers prefer avoids avoid stays stay away from keeps
away steers clear dislikes dislike fan fond keen taste tastes especially also mostly
mainly often lately recently watches watch reads read listens listen buys buy person
they them their who has have is are be being into interested interest interests
""".split())

# What a dead, slow or misbehaving server raises through LangChain.
LLM_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    openai.APIError, httpx.HTTPError, TimeoutError, ConnectionError, OSError, RuntimeError,
)

Answer = TypeVar("Answer", bound=BaseModel)


class LLMUnavailable(Exception):
    """The model server could not be reached; the whole refresh fails."""


@dataclass
class Spend:
    """Tokens, time and attempts of a run's calls, against the refresh budget."""

    prompt_budget: int = PROMPT_TOKEN_BUDGET
    output_budget: int = OUTPUT_TOKEN_BUDGET
    prompt_tokens: int = 0
    output_tokens: int = 0
    attempts: int = 0
    calls: int = 0
    skipped: int = 0  # calls not made for want of budget
    started: float = field(default_factory=time.perf_counter)

    def affords(self, prompt_estimate: int, max_output: int) -> bool:
        return (self.prompt_tokens + prompt_estimate <= self.prompt_budget
                and self.output_tokens + max_output <= self.output_budget)

    @property
    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


def estimate_tokens(messages: Sequence[tuple[str, str]]) -> int:
    return int(sum(count_tokens(text) + TEMPLATE_TOKENS for _, text in messages)
               * ESTIMATE_FACTOR)


def with_output_limit(chat_model: BaseChatModel, max_tokens: int) -> BaseChatModel:
    """The same chat model with a tighter output limit, where the model has one."""
    if "max_tokens" in type(chat_model).model_fields:
        return chat_model.model_copy(update={"max_tokens": max_tokens})
    return chat_model


def ask(
    chat_model: BaseChatModel, messages: list[tuple[str, str]], answer: type[Answer],
    prompt: PromptFile, repair: PromptFile, spend: Spend, max_output: int,
) -> Answer | None:
    """One structured call (and one repair turn); None when unusable or over budget.

    Raises LLMUnavailable when the server cannot be reached. The prompt's name travels
    in the run's metadata, so fakes can route on it.
    """
    structured = with_output_limit(chat_model, max_output).with_structured_output(
        response_schema(answer), method="json_schema", include_raw=True)
    config: RunnableConfig = {"run_name": prompt.name, "metadata": {
        "prompt_name": prompt.name, "prompt_version": prompt.version}}
    history = list(messages)
    for _ in range(MAX_ATTEMPTS):
        if not spend.affords(estimate_tokens(history), max_output):
            spend.skipped += 1
            return None
        spend.attempts += 1
        try:
            out = structured.invoke(history, config=config)
        except openai.LengthFinishReasonError as exc:
            # Cut off mid-JSON: unusable, but the server is fine.
            cut = exc.completion.usage
            spend.prompt_tokens += cut.prompt_tokens if cut else 0
            spend.output_tokens += cut.completion_tokens if cut else max_output
            history = [*history, *repair.render(
                problem="the answer was cut off at the length limit; keep it shorter")]
            continue
        except LLM_TRANSPORT_ERRORS as exc:
            raise LLMUnavailable(f"{type(exc).__name__}: {exc}"[:500]) from exc
        if not isinstance(out, dict):
            raise TypeError("structured output without include_raw")
        raw = out.get("raw")
        usage = getattr(raw, "usage_metadata", None) or {}
        spend.prompt_tokens += int(usage.get("input_tokens", 0))
        spend.output_tokens += int(usage.get("output_tokens", 0))
        spend.calls += 1
        problem = "the answer was not valid JSON for the schema"
        if out.get("parsing_error") is None and out.get("parsed") is not None:
            try:
                return answer.model_validate(out["parsed"])
            except ValidationError as exc:
                first = exc.errors()[0]
                problem = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        history = [*history, ("ai", str(getattr(raw, "content", ""))[:1000]),
                   *repair.render(problem=problem)]
    return None


def naming_variables(group: EventGroup, rating_max: float) -> dict[str, str]:
    """What the naming prompt shows of a group: statistics, never titles or user text.

    Categories only stand in for missing tags: a category most of a catalog shares
    ("movie") is what the small model then names the group after.
    """
    s = group.stats
    names = s.top_tags or s.top_categories
    return {
        "polarity": "avoided" if group.polarity == "avoid" else "liked",
        "count": str(s.count),
        "event_types": ", ".join(f"{t} {n}" for t, n in s.event_types.items()),
        "mean_rating": (f", mean rating {s.mean_rating:g}/{rating_max:g}"
                        if s.mean_rating is not None else ""),
        "tags": ", ".join(f"{t} ({n})" for t, n in list(names.items())[:PROMPT_TAGS]),
    }


@dataclass
class NamedGroup:
    group: EventGroup
    facet: InterestFacet
    problems: list[str]  # why the model's words were replaced, if they were


def name_group(
    group: EventGroup, answer: GroupName | None, embedder: Embedder | None,
    taken: Set[str] = frozenset(),
) -> NamedGroup | None:
    """The facet for a group: the model's words where they pass the checks, else ours.

    `taken` holds the (casefolded) labels of this run's earlier groups: two groups
    are two interests, and a repeated label would merge them in the profile.
    """
    problems: list[str] = []
    label, description, source = fallback_label(group), fallback_description(group), "fallback"
    if answer is None:
        problems.append("no usable answer")
    else:
        why = label_problem(answer.label, group, embedder)
        if why is None and answer.label.casefold() in taken:
            why = "names an earlier group"
        if why is None:
            label, source = answer.label, "model"
            why_not = description_problem(answer.description, group, embedder)
            if why_not is None:
                description = answer.description
            else:
                problems.append(f"description {why_not}")
        else:
            problems.append(f"label {why}")
    if answer is not None and answer.noise and group.stats.count < NOISE_BELOW:
        return None
    label_source: LabelSource = "model" if source == "model" else "fallback"
    facet = InterestFacet(
        label=label, description=description, strength=group.stats.share,
        horizon=answer.horizon if answer is not None else "short", polarity=group.polarity,
        evidence=group.event_ids, label_source=label_source,
        noise=bool(answer and answer.noise), group=group.stats)
    return NamedGroup(group=group, facet=facet, problems=problems)


def fallback_narrative(facets: Sequence[InterestFacet]) -> str:
    """"Interested in: A; B. Avoids: C." (labels may hold commas themselves)."""
    likes = [f.label for f in facets if f.polarity == "like"]
    avoids = [f.label for f in facets if f.polarity == "avoid"]
    parts = []
    if likes:
        parts.append(f"Interested in: {'; '.join(likes)}.")
    if avoids:
        parts.append(f"Avoids: {'; '.join(avoids)}.")
    return " ".join(parts)[:NARRATIVE_MAX]


def narrative_problem(text: str, facets: Sequence[InterestFacet],
                      titles: Sequence[str]) -> str | None:
    if reads_as_instructions(text):
        return "instruction-like"
    if "(" in text or any(len(f.description) >= 20 and f.description.rstrip(".") in text
                          for f in facets):
        return "copies the list it was given"
    if REFERENCE.search(text):
        return "cites an event reference"
    if names_a_title(text, titles):
        return "names a title"
    labels = {stem(w) for f in facets for w in topic_words(f.label)}
    said = [stem(w) for w in topic_words(text) if w not in NARRATIVE_WORDS]
    if not set(said) & labels:
        return "mentions none of the facets' labels"
    known = labels | {stem(w) for f in facets for w in topic_words(f.description)}
    known |= {stem(t) for f in facets if f.group for t in [*f.group.top_tags]}
    if sum(w in known for w in said) < 0.6 * len(said):
        return "mentions what the facets do not"
    return None


def recent_events(session: Session, user: User, read_through: int, limit: int) -> list[Event]:
    """The newest `limit` events no refresh has read, oldest first."""
    newest = session.scalars(
        select(Event).where(Event.user_pk == user.id, Event.id > read_through)
        .order_by(Event.id.desc()).limit(limit))
    return sorted(newest, key=lambda e: e.id)


def catalog_items(session: Session, tenant_id: int, item_ids: set[str]) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for part in chunks(sorted(item_ids)):
        for item in session.scalars(select(Item).where(Item.tenant_id == tenant_id,
                                                       Item.item_id.in_(part))):
            items[item.item_id] = item
    return items


def event_vectors(
    events: Sequence[Event], items: Mapping[str, Item], tenant_id: int,
    vectors: VectorStore, embedder: Embedder,
) -> tuple[dict[str, Vector], dict[int, Vector]]:
    """Stored item vectors and fresh text embeddings, for grouping."""
    versions = {i.item_id: i.indexed_hash for i in items.values() if i.indexed_hash}
    try:
        item_vectors = vectors.vectors(tenant_id, "items", versions) if versions else {}
    except Exception as exc:  # any client error
        raise ApiError(503, "vector_store_unavailable",
                       f"The vector store did not answer ({type(exc).__name__}); "
                       "nothing changed.") from exc
    texts = [e for e in events if is_text_event(e)]
    try:
        embedded = embedder.embed([e.text or "" for e in texts])
    except Exception as exc:  # the embedder is a remote service in production
        raise ApiError(503, "embedder_unavailable",
                       f"Could not embed the user's texts ({type(exc).__name__}).") from exc
    text_vectors = {e.id: np.asarray(v, dtype=np.float32)
                    for e, v in zip(texts, embedded, strict=True)}
    return item_vectors, text_vectors


@dataclass
class SummaryResult:
    run: SummaryRun
    activity: Activity  # every event this run read (grouped or not), oldest first
    named: list[NamedGroup]
    seen_pending: int  # the user's unrefreshed-event count when the events were read


def summarize_user(
    session: Session, user: User, llm: LLMRuntime, settings: Settings,
    embedder: Embedder, vectors: VectorStore, *, read_through: int | None = None,
    at: datetime | None = None,
) -> SummaryResult:
    """Group, name and narrate the user's unread events; record the run, whatever happens.

    `read_through` is the last event id an earlier refresh read (default: the
    profile's). Nothing else changes here: merging into the profile (and clearing the
    stale flag) is the profile refresh's job.
    """
    del at  # the prompts carry no date: the same events always ask the same questions
    name_prompt = load_prompt(settings.prompts_dir, NAME_PROMPT)
    narrate_prompt = load_prompt(settings.prompts_dir, NARRATE_PROMPT)
    repair = load_prompt(settings.prompts_dir, REPAIR_PROMPT)
    if read_through is None:
        read_through = _profile_read_through(session, user)
    events = recent_events(session, user, read_through, settings.summary_max_events)
    if not events:
        raise ApiError(409, "no_activity", "This user has no new events to summarize.")
    items = catalog_items(session, user.tenant_id, {e.item_id for e in events if e.item_id})
    item_vectors, text_vectors = event_vectors(events, items, user.tenant_id, vectors, embedder)
    counts = tag_counts(session, user.tenant_id)
    groups = group_events(events, items, item_vectors, text_vectors,
                          rating_max=settings.rating_max,
                          weights=TagWeights.from_counts(counts.document_frequency,
                                                         counts.items))
    seen_pending = user.events_since_refresh
    session.commit()  # hold no transaction open during the slow calls

    spend = Spend()
    named: list[NamedGroup] = []
    narrative, narrative_source = "", "fallback"
    problem: str | None = None
    try:
        # The largest groups are named by the model, the rest by their tags; with none
        # named by the model it is not called at all (names come from the tags alone).
        model_groups = settings.summary_model_groups
        chat_model = llm.chat_model() if groups and model_groups > 0 else None
        with llm.call_slot():
            asked = 0
            for group in groups:
                if not group.nameable:
                    continue  # nothing but flagged text (or no tags): no facet
                answer = None
                if chat_model is not None and asked < model_groups:
                    asked += 1
                    answer = ask(chat_model, name_prompt.render(**naming_variables(
                        group, settings.rating_max)), GroupName, name_prompt, repair, spend,
                        NAME_MAX_OUTPUT)
                result = name_group(group, answer, embedder,
                                    taken={n.facet.label.casefold() for n in named})
                if result is not None:
                    named.append(result)
            facets = [n.facet for n in named]
            narrative = fallback_narrative(facets)
            if chat_model is not None and facets:
                told = ask(chat_model, narrate_prompt.render(**narration_variables(facets)),
                           ProfileNarrative, narrate_prompt, repair, spend, NARRATIVE_MAX_OUTPUT)
                titles = [t for n in named for t in n.group.titles]
                if told is not None and narrative_problem(told.narrative, facets, titles) is None:
                    narrative, narrative_source = told.narrative, "model"
    except LLMUnavailable as exc:
        problem = str(exc)
    except LLM_TRANSPORT_ERRORS as exc:  # the embedded server failed to start
        problem = f"{type(exc).__name__}: {exc}"[:500]

    summary = None
    if problem is None:
        summary = InterestSummary(
            facets=[n.facet for n in named], narrative=narrative,
            narrative_source="model" if narrative_source == "model" else "fallback",
            prompts={name_prompt.name: name_prompt.version,
                     narrate_prompt.name: narrate_prompt.version})
    first, last = events[0], events[-1]
    run = SummaryRun(
        tenant_id=user.tenant_id, user_pk=user.id,
        status="ok" if summary is not None else "failed",
        model=llm.model_name, prompt_name=name_prompt.name, prompt_version=name_prompt.version,
        prompt_tokens=spend.prompt_tokens, output_tokens=spend.output_tokens,
        latency_ms=spend.latency_ms, attempts=spend.attempts, events_read=len(events),
        first_event_id=first.event_id, last_event_id=last.event_id,
        first_event_ts=first.ts, last_event_ts=last.ts,
        summary=json.loads(summary.model_dump_json()) if summary is not None else None,
        error_code=None if summary is not None else "llm_unavailable",
        error=problem,
    )
    session.add(run)
    session.commit()
    if named:
        log.debug("user %s: %d groups, replaced words: %s", user.user_id, len(named),
                  {n.facet.label: n.problems for n in named if n.problems})
    return SummaryResult(run=run, activity=Activity(events=events), named=named,
                         seen_pending=seen_pending)


def narration_variables(facets: Sequence[InterestFacet]) -> dict[str, str]:
    """Labels only: descriptions gave the small model sentences to copy."""
    def listed(polarity: str) -> str:
        return "; ".join(f.label for f in facets if f.polarity == polarity) or "nothing"

    return {"likes": listed("like"), "avoids": listed("avoid")}


def _profile_read_through(session: Session, user: User) -> int:
    profile = session.get(Profile, user.id)
    return profile.read_through_event if profile is not None else 0


def summary_failure(run: SummaryRun) -> ApiError:
    """The API error for a failed run: 503 when the server is down, else 502."""
    status = 503 if run.error_code == "llm_unavailable" else 502
    return ApiError(status, run.error_code or "llm_invalid_output",
                    f"The summary failed (recorded as run {run.id}): {run.error}")


def runs_for_user(session: Session, user: User, limit: int = 50) -> list[SummaryRun]:
    return list(session.scalars(
        select(SummaryRun).where(SummaryRun.user_pk == user.id)
        .order_by(SummaryRun.id.desc()).limit(limit)
    ))

