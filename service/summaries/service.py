"""The interest summarizer: recent activity in, validated facets with evidence out.

Failure never touches what is stored: a failed run is recorded (visible through the
API), the user stays stale, and the events stay where they are.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import openai
from langchain_core.language_models import BaseChatModel
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.catalog.models import Item
from service.core.config import Settings
from service.core.db import utcnow
from service.core.errors import ApiError
from service.core.hashing import chunks
from service.ingest.models import Event
from service.llm.prompts import PromptFile, load_prompt
from service.llm.runtime import LLMRuntime
from service.llm.tokens import count_tokens
from service.summaries.activity import Activity, build_activity
from service.summaries.models import SummaryRun
from service.summaries.schemas import (
    MAX_FACETS,
    REFERENCE_ONLY,
    InterestFacet,
    InterestSummary,
    summary_json_schema,
)
from service.users.models import User

SUMMARY_PROMPT = "summarize_interests"
REPAIR_PROMPT = "repair_json"
MAX_ATTEMPTS = 2  # the first answer and one repair

# What a dead, slow or misbehaving server raises through LangChain.
LLM_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    openai.APIError, httpx.HTTPError, TimeoutError, ConnectionError, OSError, RuntimeError,
)


@dataclass
class LLMOutcome:
    summary: InterestSummary | None
    problem: str | None
    unavailable: bool
    prompt_tokens: int
    output_tokens: int
    attempts: int
    latency_ms: int


def validate_summary(parsed: Any, refs: dict[str, str]) -> tuple[InterestSummary | None, str]:
    """Check the model's JSON; map references to event ids; drop what is unsupported."""
    if not isinstance(parsed, dict) or not isinstance(parsed.get("facets"), list):
        return None, 'the answer must be a JSON object with a "facets" list'
    facets: list[InterestFacet] = []
    seen: set[str] = set()
    invented = 0
    reason = "invalid fields"
    for raw in parsed["facets"][:20]:
        if not isinstance(raw, dict):
            continue
        cited = [str(x).strip() for x in raw.get("evidence") or [] if isinstance(x, str | int)]
        invented += sum(1 for r in cited if r not in refs)
        known = [refs[r] for r in dict.fromkeys(cited) if r in refs]
        label = raw.get("label")
        if isinstance(label, str) and REFERENCE_ONLY.match(label.strip()):
            # Small models label a facet with its reference; its description names it.
            label = " ".join(str(raw.get("description", "")).split()[:6])
        try:
            facet = InterestFacet.model_validate({**raw, "label": label, "evidence": known})
        except ValidationError as exc:
            reason = str(exc.errors()[0]["msg"])
            continue  # no evidence left, or junk label: the facet goes, the summary stays
        if facet.label.casefold() in seen:
            continue
        seen.add(facet.label.casefold())
        facets.append(facet)
    if parsed["facets"] and not facets:
        why = "invented event references" if invented else reason
        return None, f"no facet was usable ({why}); cite only the given E-references"
    narrative = parsed.get("narrative")
    try:
        summary = InterestSummary(facets=facets[:MAX_FACETS],
                                  narrative=narrative if isinstance(narrative, str) else "")
    except ValidationError as exc:
        return None, f"invalid summary: {exc.errors()[0]['msg']}"
    return summary, ""


def ask_for_summary(
    chat_model: BaseChatModel,
    messages: list[tuple[str, str]],
    refs: dict[str, str],
    repair: PromptFile,
) -> LLMOutcome:
    """Structured call with one repair retry on an unusable answer."""
    structured = chat_model.with_structured_output(
        summary_json_schema(list(refs)), method="json_schema", include_raw=True
    )
    history: list[tuple[str, str]] = list(messages)
    prompt_tokens = output_tokens = 0
    problem = "no answer"
    started = time.perf_counter()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            out = structured.invoke(history)
        except openai.LengthFinishReasonError as exc:
            # The answer hit the output limit mid-JSON: unusable, but the server is fine.
            cut = exc.completion.usage
            prompt_tokens += cut.prompt_tokens if cut else 0
            output_tokens += cut.completion_tokens if cut else 0
            problem = "the answer was cut off at the length limit; keep it shorter"
            history = [*history, *repair.render(problem=problem)]
            continue
        except LLM_TRANSPORT_ERRORS as exc:
            return LLMOutcome(None, f"{type(exc).__name__}: {exc}"[:500], True, prompt_tokens,
                              output_tokens, attempt, _ms_since(started))
        if not isinstance(out, dict):
            raise TypeError("structured output without include_raw")
        raw = out.get("raw")
        usage = getattr(raw, "usage_metadata", None) or {}
        prompt_tokens += int(usage.get("input_tokens", 0))
        output_tokens += int(usage.get("output_tokens", 0))
        if out.get("parsing_error") is not None or out.get("parsed") is None:
            problem = "the answer was not valid JSON for the schema"
            summary = None
        else:
            summary, problem = validate_summary(out["parsed"], refs)
        if summary is not None:
            return LLMOutcome(summary, None, False, prompt_tokens, output_tokens, attempt,
                              _ms_since(started))
        answer = str(getattr(raw, "content", ""))[:2000]
        history = [*history, ("ai", answer), *repair.render(problem=problem)]
    return LLMOutcome(None, problem, False, prompt_tokens, output_tokens, MAX_ATTEMPTS,
                      _ms_since(started))


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def recent_activity(
    session: Session, user: User, settings: Settings, prompt: PromptFile, now: str
) -> Activity:
    events = list(session.scalars(
        select(Event).where(Event.user_pk == user.id)
        .order_by(Event.ts.desc(), Event.id.desc()).limit(settings.summary_max_events)
    ))
    items: dict[str, Item] = {}
    for part in chunks(sorted({e.item_id for e in events if e.item_id})):
        for item in session.scalars(select(Item).where(Item.tenant_id == user.tenant_id,
                                                       Item.item_id.in_(part))):
            items[item.item_id] = item
    overhead = sum(count_tokens(text) for _, text in
                   prompt.render(activity="", now=now, event_count=str(len(events))))
    return build_activity(
        events, items, budget_tokens=max(settings.summary_prompt_tokens - overhead, 0),
        count_tokens=count_tokens, rating_max=settings.rating_max,
    )


@dataclass
class SummaryResult:
    run: SummaryRun
    activity: Activity
    seen_pending: int  # the user's unrefreshed-event count when the activity was read


def summarize_user(
    session: Session, user: User, llm: LLMRuntime, settings: Settings,
    at: datetime | None = None,
) -> SummaryResult:
    """Run the summarizer for one user and record the run, whatever happens.

    Nothing else changes here: merging into the profile (and clearing the stale
    flag) is the profile refresh's job.
    """
    prompt = load_prompt(settings.prompts_dir, SUMMARY_PROMPT)
    repair = load_prompt(settings.prompts_dir, REPAIR_PROMPT)
    now = (at or utcnow()).strftime("%Y-%m-%d %H:%M UTC")
    activity = recent_activity(session, user, settings, prompt, now)
    if not activity.events:
        raise ApiError(409, "no_activity", "This user has no events to summarize.")
    seen_pending = user.events_since_refresh
    messages = prompt.render(activity=activity.text, now=now,
                             event_count=str(len(activity.events)))
    session.commit()  # hold no transaction open during the slow call

    try:
        chat_model = llm.chat_model()
    except LLM_TRANSPORT_ERRORS as exc:  # the embedded server failed to start
        outcome = LLMOutcome(None, f"{type(exc).__name__}: {exc}"[:500], True, 0, 0, 0, 0)
    else:
        with llm.call_slot():
            outcome = ask_for_summary(chat_model, messages, activity.refs, repair)

    first, last = activity.first, activity.last
    run = SummaryRun(
        tenant_id=user.tenant_id, user_pk=user.id,
        status="ok" if outcome.summary else "failed",
        model=llm.model_name, prompt_name=prompt.name, prompt_version=prompt.version,
        prompt_tokens=outcome.prompt_tokens, output_tokens=outcome.output_tokens,
        latency_ms=outcome.latency_ms, attempts=outcome.attempts,
        events_read=len(activity.events),
        first_event_id=first.event_id if first else None,
        last_event_id=last.event_id if last else None,
        first_event_ts=first.ts if first else None,
        last_event_ts=last.ts if last else None,
        summary=json.loads(outcome.summary.model_dump_json()) if outcome.summary else None,
        error_code=None if outcome.summary else
        ("llm_unavailable" if outcome.unavailable else "llm_invalid_output"),
        error=outcome.problem,
    )
    session.add(run)
    session.commit()
    return SummaryResult(run=run, activity=activity, seen_pending=seen_pending)


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
