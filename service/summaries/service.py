"""The interest summarizer: unread events grouped, each group named, a narrative on top.

1. The events no earlier refresh has read (the newest `summary_max_events`) are
   grouped deterministically (`activity.py` reads them, `grouping.py` groups them);
   a group's events are its evidence.
2. The model names each group from its statistics only (`naming.py`), one small call
   per group, temperature from the settings, bounded output (`calls.py`).
3. The model writes a short narrative from the facets' labels (`narrative.py`).
All calls share one token budget (`calls.py`): a call that might not fit is not
made, and its group keeps its deterministic words.

Failure never touches what is stored: only an unreachable model fails the run
(recorded, 503 `llm_unavailable`); the user stays stale and the events stay where
they are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.catalog.service import tag_counts
from service.core.config import Settings
from service.core.errors import ApiError, Conflict
from service.ingest.evidence import user_item_titles
from service.ingest.models import Event
from service.llm.failures import LLMUnavailable, describe, model_call
from service.llm.prompts import PromptFile, load_prompt
from service.llm.runtime import LLMRuntime
from service.summaries.activity import (
    Activity,
    catalog_items,
    event_vectors,
    profile_read_through,
    recent_events,
)
from service.summaries.calls import Spend, ask
from service.summaries.grouping import EventGroup, TagWeights, group_events
from service.summaries.models import SummaryRun
from service.summaries.naming import (
    NAME_MAX_OUTPUT,
    NAME_PROMPT,
    NamedGroup,
    name_group,
    naming_variables,
)
from service.summaries.narrative import (
    NARRATE_PROMPT,
    NARRATIVE_MAX_OUTPUT,
    fallback_narrative,
    narration_variables,
    narrative_problem,
)
from service.summaries.schemas import (
    GroupName,
    InterestSummary,
    LabelSource,
    ProfileNarrative,
)
from service.users.models import User
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore

log = logging.getLogger(__name__)

REPAIR_PROMPT = "repair_json"

# The label checks embed words; an embedder that fails there (a remote service in
# production) fails the run as the model does.
CHECK_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError, OSError, RuntimeError)


@dataclass(frozen=True)
class SummaryPrompts:
    name: PromptFile
    narrate: PromptFile
    repair: PromptFile

    @classmethod
    def load(cls, settings: Settings) -> SummaryPrompts:
        return cls(load_prompt(settings.prompts_dir, NAME_PROMPT),
                   load_prompt(settings.prompts_dir, NARRATE_PROMPT),
                   load_prompt(settings.prompts_dir, REPAIR_PROMPT))


@dataclass
class SummaryResult:
    run: SummaryRun
    activity: Activity  # every event this run read (grouped or not), oldest first
    named: list[NamedGroup]
    seen_pending: int  # the user's unrefreshed-event count when the events were read


@dataclass
class Words:
    """What naming and narrating produced, as far as they got; `problem` fails the run."""

    named: list[NamedGroup] = field(default_factory=list)
    narrative: str = ""
    narrative_source: LabelSource = "fallback"
    problem: str | None = None


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
    prompts = SummaryPrompts.load(settings)
    if read_through is None:
        read_through = profile_read_through(session, user)
    events = recent_events(session, user, read_through, settings.summary_max_events)
    if not events:
        raise Conflict("no_activity", "This user has no new events to summarize.")
    groups = group_user_events(session, user, events, settings, embedder, vectors)
    titles = user_item_titles(session, user)
    seen_pending = user.events_since_refresh
    session.commit()  # hold no transaction open during the slow calls

    spend = Spend()
    words = name_and_narrate(groups, llm, settings, embedder, prompts, spend, titles)
    run = record_run(session, user, llm, events, prompts, spend, words)
    if words.named:
        log.debug("user %s: %d groups, replaced words: %s", user.user_id, len(words.named),
                  {n.facet.label: n.problems for n in words.named if n.problems})
    return SummaryResult(run=run, activity=Activity(events=events), named=words.named,
                         seen_pending=seen_pending)


def group_user_events(
    session: Session, user: User, events: list[Event], settings: Settings,
    embedder: Embedder, vectors: VectorStore,
) -> list[EventGroup]:
    """The events' groups, from their items' vectors, their texts' and the catalog's tags."""
    items = catalog_items(session, user.tenant_id, {e.item_id for e in events if e.item_id})
    item_vectors, text_vectors = event_vectors(events, items, user.tenant_id, vectors, embedder)
    counts = tag_counts(session, user.tenant_id)
    return group_events(events, items, item_vectors, text_vectors,
                        rating_max=settings.rating_max,
                        weights=TagWeights.from_counts(counts.document_frequency, counts.items))


def name_and_narrate(
    groups: Sequence[EventGroup], llm: LLMRuntime, settings: Settings,
    embedder: Embedder, prompts: SummaryPrompts, spend: Spend,
    titles: Sequence[str] = (),
) -> Words:
    """Each nameable group's facet, then the narrative; an unreachable model stops both.
    `titles`: every title the user has (`user_item_titles`), beside the groups' own."""
    words = Words()
    try:
        # The largest groups are named by the model, the rest by their tags; with none
        # named by the model it is not called at all (names come from the tags alone).
        model_groups = settings.summary_model_groups
        chat_model = None
        if groups and model_groups > 0:
            with model_call():  # the embedded server starts here
                chat_model = llm.chat_model()
        with llm.call_slot():
            asked = 0
            for group in groups:
                if not group.nameable:
                    continue  # nothing but flagged text (or no tags): no facet
                answer = None
                if chat_model is not None and asked < model_groups:
                    asked += 1
                    answer = ask(chat_model, prompts.name.render(**naming_variables(
                        group, settings.rating_max)), GroupName, prompts.repair, spend,
                        NAME_MAX_OUTPUT)
                result = name_group(group, answer, embedder,
                                    taken={n.facet.label.casefold() for n in words.named},
                                    titles=titles)
                if result is not None:
                    words.named.append(result)
            facets = [n.facet for n in words.named]
            words.narrative = fallback_narrative(facets)
            if chat_model is not None and facets:
                told = ask(chat_model, prompts.narrate.render(**narration_variables(facets)),
                           ProfileNarrative, prompts.repair, spend, NARRATIVE_MAX_OUTPUT)
                known = [*titles, *(t for n in words.named for t in n.group.titles)]
                if told is not None and narrative_problem(told.narrative, facets, known) is None:
                    words.narrative, words.narrative_source = told.narrative, "model"
    except LLMUnavailable as exc:
        words.problem = str(exc)
    except CHECK_ERRORS as exc:
        words.problem = describe(exc)
    return words


def record_run(
    session: Session, user: User, llm: LLMRuntime, events: Sequence[Event],
    prompts: SummaryPrompts, spend: Spend, words: Words,
) -> SummaryRun:
    """The run, stored whether it succeeded or not (a failed one holds no summary)."""
    summary = None
    if words.problem is None:
        summary = InterestSummary(
            facets=[n.facet for n in words.named], narrative=words.narrative,
            narrative_source=words.narrative_source,
            prompts={prompts.name.name: prompts.name.version,
                     prompts.narrate.name: prompts.narrate.version})
    first, last = events[0], events[-1]
    run = SummaryRun(
        tenant_id=user.tenant_id, user_pk=user.id,
        status="ok" if summary is not None else "failed",
        model=llm.model_name, prompt_name=prompts.name.name,
        prompt_version=prompts.name.version,
        prompt_tokens=spend.prompt_tokens, output_tokens=spend.output_tokens,
        latency_ms=spend.latency_ms, attempts=spend.attempts, events_read=len(events),
        first_event_id=first.event_id, last_event_id=last.event_id,
        first_event_ts=first.ts, last_event_ts=last.ts,
        summary=json.loads(summary.model_dump_json()) if summary is not None else None,
        error_code=None if summary is not None else "llm_unavailable",
        error=words.problem,
    )
    session.add(run)
    session.commit()
    return run


def summary_failure(run: SummaryRun) -> ApiError:
    """The API error for a failed run: 503 when the server is down, else 502."""
    status = 503 if run.error_code == "llm_unavailable" else 502
    return ApiError(status, run.error_code or "llm_invalid_output",
                    f"The summary failed (recorded as run {run.id}): {run.error}")


def runs_for_user(session: Session, user: User, limit: int = 50,
                  before: int | None = None) -> list[SummaryRun]:
    """The user's runs, newest first; `before`: only runs older than that run id."""
    query = select(SummaryRun).where(SummaryRun.user_pk == user.id)
    if before is not None:
        query = query.where(SummaryRun.id < before)
    return list(session.scalars(query.order_by(SummaryRun.id.desc()).limit(limit)))

