"""Fake chat models that route on the prompt's name, and a clock a test moves forward."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from service.llm.fake import ScriptedChatModel, prompt_name


def between(text: str, start: str, end: str) -> str:
    return text.rsplit(start, 1)[1].split(end, 1)[0] if start in text else ""


class TopicSummarizer(ScriptedChatModel):
    """Routes on the prompt's name. Naming a group: the first topic whose keyword is
    among the group's tags gives its label and description; an unknown group is called
    noise (dropped when small, else named by its tags). Narrating: "Interests: " and
    the listed labels.

    `topics` maps a facet label to (keyword, description, polarity); the polarity is
    not the model's to say any more and is ignored. `before_answer` lets a test hold
    (or fail) a call.
    """

    topics: dict[str, tuple[str, str, str]] = {}
    before_answer: Callable[[], object] | None = None
    named: list[str] = []  # the prompt names of the calls answered, in order

    def _answer(self, name: str | None, prompt: str) -> str:
        if name == "name_interest_group":
            block = between(prompt, "<group>", "</group>").lower()
            for label, (keyword, description, _) in self.topics.items():
                if keyword in block:
                    return json.dumps({"label": label, "description": description,
                                       "horizon": "short", "noise": False})
            return json.dumps({"label": "Assorted things", "description": "Various things.",
                               "horizon": "short", "noise": True})
        if name == "narrate_profile":
            likes = between(prompt, "likes:", ". avoids:").strip()
            labels = [part.strip() for part in likes.split(";")
                      if part.strip() and part.strip() != "nothing"]
            return json.dumps({"narrative": "Interests: " + ", ".join(labels) + "."})
        return json.dumps({})

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        if self.before_answer is not None:
            self.before_answer()
        name = prompt_name(run_manager)
        self.named.append(name or "")
        prompt = "\n".join(str(m.content) for m in messages)
        reply = self._answer(name, prompt)
        usage = {"input_tokens": len(prompt.split()), "output_tokens": len(reply.split()),
                 "total_tokens": len(prompt.split()) + len(reply.split())}
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage(content=reply, usage_metadata=usage))])


def topic_summarizer(topics: dict[str, tuple[str, str, str]]) -> TopicSummarizer:
    return TopicSummarizer(replies=[], calls=[], topics=topics, named=[])


class Clock:
    """A clock a test moves forward; thread-safe enough for the worker."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **kw: float) -> datetime:
        with self._lock:
            self.now += timedelta(**kw)
            return self.now


class RoutedChatModel(ScriptedChatModel):
    """Scripted replies per prompt name (each list replayed in order, its last entry
    repeating; exceptions are raised). Usage is counted with our tokenizer, so token
    budgets can be checked. Records the response schemas it was asked for."""

    routes: dict[str, list[str | BaseException]] = {}
    asked: dict[str, int] = {}
    schemas: list[dict[str, Any]] = []
    prompts: list[tuple[str, str]] = []  # (prompt name, whole prompt text)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        from service.llm.tokens import count_tokens

        self.calls.append(list(messages))
        name = prompt_name(run_manager) or ""
        prompt = "\n".join(str(m.content) for m in messages)
        self.prompts.append((name, prompt))
        replies = self.routes.get(name) or [json.dumps({})]
        index = self.asked.get(name, 0)
        self.asked[name] = index + 1
        reply = replies[min(index, len(replies) - 1)]
        if isinstance(reply, BaseException):
            raise reply
        usage = {"input_tokens": count_tokens(prompt), "output_tokens": count_tokens(reply),
                 "total_tokens": count_tokens(prompt) + count_tokens(reply)}
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage(content=reply, usage_metadata=usage))])

    def with_structured_output(self, schema: dict[str, Any] | type, *,
                               include_raw: bool = False, **kwargs: Any) -> Any:
        assert isinstance(schema, dict)
        self.schemas.append(schema)
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)


def routed(routes: dict[str, list[str | BaseException]]) -> RoutedChatModel:
    return RoutedChatModel(replies=[], calls=[], routes=routes, asked={}, schemas=[],
                           prompts=[])


def group_name(label: str, description: str = "A clear interest.", horizon: str = "short",
               noise: bool = False) -> str:
    return json.dumps({"label": label, "description": description, "horizon": horizon,
                       "noise": noise})
