"""Calling the model for a chat answer, whole or piece by piece.

Any failure of the call (`service.llm.failures`) is the model being unavailable: a
503, and nothing is stored. The user asked for the model, so no template stands in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.runnables import Runnable

from service.core.errors import Unavailable
from service.llm.failures import NoAnswer, model_call
from service.llm.prompts import RenderedPrompt
from service.llm.runtime import LLMRuntime
from service.llm.usage import TokenUsage, token_usage

CHAT_MAX_OUTPUT_TOKENS = 400  # one to three sentences; a looping small model stops here


def llm_unavailable(exc: NoAnswer) -> Unavailable:
    return Unavailable("llm_unavailable",
                       f"The language model could not answer ({type(exc.cause).__name__}); "
                       "nothing was stored. Try again later.")


def _answering_model(llm: LLMRuntime) -> Runnable[LanguageModelInput, BaseMessage]:
    return llm.chat_model().bind(max_tokens=CHAT_MAX_OUTPUT_TOKENS)


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)


@dataclass
class ModelReply:
    text: str
    prompt_tokens: int | None
    output_tokens: int | None
    latency_ms: int


def ask_model(llm: LLMRuntime, messages: RenderedPrompt) -> ModelReply:
    """One plain-text call; any failure of the call is the model being unavailable."""
    started = time.perf_counter()
    try:
        with model_call(), llm.call_slot():
            message = _answering_model(llm).invoke(list(messages),
                                                   config=messages.run_config())
    except NoAnswer as exc:
        raise llm_unavailable(exc) from exc.cause
    usage = token_usage(message)
    return ModelReply(_text(message), usage.prompt_tokens if usage else None,
                      usage.output_tokens if usage else None, _ms(started))


class AnswerStream:
    """The model's answer piece by piece, holding a call slot until it ends.

    The first piece is read on construction, so a server that is down is a plain
    503 before any event is sent; a failure later surfaces from `pieces()`.
    """

    def __init__(self, llm: LLMRuntime, messages: RenderedPrompt) -> None:
        self._started = time.perf_counter()
        self._slot = ExitStack()
        self._slot.enter_context(llm.call_slot())
        self._parts: list[str] = []
        self._usage: list[TokenUsage] = []
        try:
            with model_call():
                self._chunks: Iterator[BaseMessageChunk] = iter(
                    _answering_model(llm).stream(  # type: ignore[arg-type]
                        list(messages), config=messages.run_config()))
                self._first = next(self._chunks, None)
        except NoAnswer as exc:
            self._slot.close()
            raise llm_unavailable(exc) from exc.cause

    def pieces(self) -> Iterator[str]:
        try:
            chunk = self._first
            while chunk is not None:
                usage = token_usage(chunk)
                if usage:
                    self._usage.append(usage)
                text = _text(chunk)
                if text:
                    self._parts.append(text)
                    yield text
                try:
                    with model_call():
                        chunk = next(self._chunks, None)
                except NoAnswer as exc:  # the server went away mid-answer
                    raise llm_unavailable(exc) from exc.cause
        finally:
            self.close()

    def close(self) -> None:
        self._slot.close()

    def __del__(self) -> None:
        # A client gone before the first event never runs `pieces()`; free the slot anyway.
        self.close()

    def reply(self) -> ModelReply:
        text = "".join(self._parts)
        if not self._usage:
            return ModelReply(text, None, None, _ms(self._started))
        return ModelReply(text, sum(u.prompt_tokens for u in self._usage),
                          sum(u.output_tokens for u in self._usage), _ms(self._started))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
