"""One structured model call of a refresh: schema-bound, repaired once, within budget.

All of a refresh's calls share one token budget (`PROMPT_TOKEN_BUDGET`,
`OUTPUT_TOKEN_BUDGET`): a call that might not fit is not made, and its group keeps
its deterministic words.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ValidationError

from service.llm.failures import AnswerCutOff, model_call
from service.llm.prompts import Message, PromptFile, RenderedPrompt
from service.llm.structured import response_schema
from service.llm.tokens import count_tokens
from service.llm.usage import token_usage

MAX_ATTEMPTS = 2  # the first answer and one repair
# Per refresh, all calls together (DESIGN.md §8: 100 new events, <= 1,200 / 250).
PROMPT_TOKEN_BUDGET = 1200
OUTPUT_TOKEN_BUDGET = 250
# Our tokenizer (cl100k) is not the served model's, and chat templates add a few
# tokens per message: estimates are padded so the budget holds on the server's count.
ESTIMATE_FACTOR = 1.2
TEMPLATE_TOKENS = 8

Answer = TypeVar("Answer", bound=BaseModel)


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


def estimate_tokens(messages: Sequence[Message]) -> int:
    return int(sum(count_tokens(text) + TEMPLATE_TOKENS for _, text in messages)
               * ESTIMATE_FACTOR)


def with_output_limit(chat_model: BaseChatModel, max_tokens: int) -> BaseChatModel:
    """The same chat model with a tighter output limit, where the model has one."""
    if "max_tokens" in type(chat_model).model_fields:
        return chat_model.model_copy(update={"max_tokens": max_tokens})
    return chat_model


def ask(
    chat_model: BaseChatModel, rendered: RenderedPrompt, answer: type[Answer],
    repair: PromptFile, spend: Spend, max_output: int,
) -> Answer | None:
    """One structured call (and one repair turn); None when unusable or over budget.

    Raises LLMUnavailable when the server cannot be reached. The repair turn is asked
    on behalf of the first prompt, whose name travels in the run's metadata.
    """
    structured = with_output_limit(chat_model, max_output).with_structured_output(
        response_schema(answer), method="json_schema", include_raw=True)
    config = rendered.run_config()
    history = list(rendered)
    for _ in range(MAX_ATTEMPTS):
        if not spend.affords(estimate_tokens(history), max_output):
            spend.skipped += 1
            return None
        spend.attempts += 1
        try:
            with model_call():
                out = structured.invoke(history, config=config)
        except AnswerCutOff as cut:  # unusable mid-JSON, but the server is fine
            spend.prompt_tokens += cut.usage.prompt_tokens if cut.usage else 0
            spend.output_tokens += cut.usage.output_tokens if cut.usage else max_output
            history = [*history, *repair.render(
                problem="the answer was cut off at the length limit; keep it shorter")]
            continue
        if not isinstance(out, dict):
            raise TypeError("structured output without include_raw")
        raw = out.get("raw")
        usage = token_usage(raw)
        if usage is not None:
            spend.prompt_tokens += usage.prompt_tokens
            spend.output_tokens += usage.output_tokens
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
