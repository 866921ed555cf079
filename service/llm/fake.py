"""A LangChain fake chat model that speaks our structured-output protocol (tests only).

It replays scripted replies; `with_structured_output(..., include_raw=True)` parses
them as JSON exactly as the OpenAI-compatible path does, so chain logic (validation,
evidence checks, repair retry) is tested without a model. Entries that are exceptions
are raised, to play a failing server.

Fakes that answer differently per prompt route on the prompt's name, which every
call carries in its run metadata (`RenderedPrompt.run_config()`); `prompt_name()`
reads it. Never on the prompt's wording: rewording a prompt file must not change
what a fake answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda


def prompt_name(source: CallbackManagerForLLMRun | RunnableConfig | None) -> str | None:
    """The name of the prompt file a call was rendered from: read from the run manager
    `_generate` gets, or from the config `stream()` gets (LangChain hands `_stream` no
    run manager)."""
    metadata = (source.get("metadata") if isinstance(source, dict)
                else getattr(source, "metadata", None)) or {}
    name = metadata.get("prompt_name")
    return str(name) if name else None


class ScriptedChatModel(BaseChatModel):
    replies: list[str | BaseException]
    calls: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        index = len(self.calls) - 1
        reply = self.replies[min(index, len(self.replies) - 1)]
        if isinstance(reply, BaseException):
            raise reply
        prompt_tokens = sum(len(str(m.content).split()) for m in messages)
        message = AIMessage(content=reply, usage_metadata={
            "input_tokens": prompt_tokens, "output_tokens": len(reply.split()),
            "total_tokens": prompt_tokens + len(reply.split()),
        })
        return ChatResult(generations=[ChatGeneration(message=message)])

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, dict[str, Any]]:
        def parse(message: BaseMessage) -> dict[str, Any]:
            try:
                parsed, error = json.loads(str(message.content)), None
            except json.JSONDecodeError as exc:
                parsed, error = None, exc
            return {"raw": message, "parsed": parsed, "parsing_error": error}

        return self | RunnableLambda(parse)


def scripted(replies: Sequence[str | BaseException]) -> ScriptedChatModel:
    return ScriptedChatModel(replies=list(replies), calls=[])
