"""An app whose fake model summarizes activity (for profiles) and answers chat prompts
as a test scripts it, streaming word by word like a real server."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig

from service.chat.service import CHAT_PROMPT
from service.core.config import Settings
from service.llm.fake import prompt_name
from service.vectors.embeddings import Embedder
from tests.utils.fakes import TopicSummarizer
from tests.utils.profiles import TOPICS, ProfileApp
from tests.utils.recommend import catalog_app

CHAT_PATH = "/v1/recommendations/{}/chat"


class ChattingSummarizer(TopicSummarizer):
    """The topic summarizer, except for calls of the chat prompt: those go to `answer`,
    which gets the whole prompt text and returns the reply (or raises, to play a dead
    server).
    Streams split the reply after each space; `fail_after` breaks a stream midway."""

    answer: Callable[[str], str] | None = None
    chat_calls: list[list[BaseMessage]] = []
    fail_after: int | None = None
    streamed_prompt: str | None = None

    def _chat_reply(self, messages: list[BaseMessage], name: str | None) -> str | None:
        if name != CHAT_PROMPT:
            return None
        prompt = "\n".join(str(m.content) for m in messages)
        self.chat_calls.append(list(messages))
        assert self.answer is not None, "no chat answer scripted"
        return self.answer(prompt)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        reply = self._chat_reply(messages, prompt_name(run_manager))
        if reply is None:
            return super()._generate(messages, stop, run_manager, **kwargs)
        usage = {"input_tokens": 100, "output_tokens": len(reply.split()), "total_tokens": 0}
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage(content=reply, usage_metadata=usage))])

    def stream(self, input: Any, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        # `_stream` gets no run manager to read the prompt's name from; the config has it.
        self.streamed_prompt = prompt_name(config)
        return super().stream(input, config, stop=stop, **kwargs)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        reply = self._chat_reply(messages, self.streamed_prompt)
        assert reply is not None, "only chat answers are streamed"
        for n, piece in enumerate(re.findall(r"\S+\s*", reply)):
            if self.fail_after is not None and n == self.fail_after:
                raise ConnectionError("the server went away")
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))


@dataclass
class ChatApp(ProfileApp):
    model: ChattingSummarizer

    def recommend(self, user: str = "u1", **params: Any) -> dict[str, Any]:
        r = self.t.get(f"/v1/users/{user}/recommendations", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def ask(self, recommendation_id: str, status: int = 200, **body: Any) -> dict[str, Any]:
        r = self.t.post(CHAT_PATH.format(recommendation_id), json=body)
        assert r.status_code == status, r.text
        return dict(r.json())

    def turns(self, recommendation_id: str) -> list[dict[str, Any]]:
        r = self.t.get(CHAT_PATH.format(recommendation_id))
        assert r.status_code == 200, r.text
        return list(r.json()["turns"])


def make_chat_app(settings: Settings, embedder: Embedder) -> Iterator[ChatApp]:
    model = ChattingSummarizer(replies=[], calls=[], topics=TOPICS, chat_calls=[])
    with catalog_app(settings, model, embedder) as (t, clock):
        yield ChatApp(t, model, clock, settings)


def sse_events(body: str) -> list[tuple[str, Any]]:
    """(event name, decoded JSON data) for each server-sent event, in order."""
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events
