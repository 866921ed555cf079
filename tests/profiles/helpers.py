"""A summarizer fake that reads the prompt, a movable clock, and an app built on both."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from service.llm.fake import ScriptedChatModel

LINE = re.compile(r"^(E\d+) \| [^|]+\| (.*)$")


class TopicSummarizer(ScriptedChatModel):
    """Writes one facet per topic whose keyword appears in the activity block,
    citing the references of the lines that mention it (as a model should).

    `topics` maps a facet label to (keyword, description, polarity). `before_answer`
    lets a test hold the call (to line up concurrent refreshes).
    """

    topics: dict[str, tuple[str, str, str]] = {}
    before_answer: Callable[[], None] | None = None

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        if self.before_answer is not None:
            self.before_answer()
        prompt = "\n".join(str(m.content) for m in messages)
        block = prompt.rsplit("<activity>", 1)[1].split("</activity>")[0]
        lines = [m.groups() for m in map(LINE.match, block.strip().splitlines()) if m]
        facets = []
        for label, (keyword, description, polarity) in self.topics.items():
            refs = [ref for ref, text in lines if keyword in text.lower()][-6:]
            if refs:
                facets.append({"label": label, "description": description, "strength": 0.9,
                               "horizon": "short", "polarity": polarity, "evidence": refs})
        reply = json.dumps({"facets": facets, "narrative": "Interests: " + ", ".join(
            f["label"] for f in facets) + "."})
        usage = {"input_tokens": len(prompt.split()), "output_tokens": len(reply.split()),
                 "total_tokens": len(prompt.split()) + len(reply.split())}
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage(content=reply, usage_metadata=usage))])  # type: ignore[arg-type]


def topic_summarizer(topics: dict[str, tuple[str, str, str]]) -> TopicSummarizer:
    return TopicSummarizer(replies=[], calls=[], topics=topics)


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
