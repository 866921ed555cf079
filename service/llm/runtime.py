"""One factory for the configured LLM backend; domain code sees a LangChain chat model."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from service.core.config import Settings
from service.llm.embedded import EMBEDDED_MODEL_NAME, EmbeddedLLMServer
from service.llm.fake import scripted

EMPTY_SUMMARY = json.dumps({"facets": [], "narrative": ""})


class LLMRuntime:
    """Holds the chat model (and the embedded server when that is the backend)."""

    def __init__(self, settings: Settings, chat_model: BaseChatModel | None = None,
                 cache: BaseCache | None = None) -> None:
        self.settings = settings
        self._cache = cache  # answers for repeated prompts (the offline evaluation)
        self.embedded: EmbeddedLLMServer | None = None
        if chat_model is None and settings.llm_backend == "embedded":
            self.embedded = EmbeddedLLMServer(
                threads=settings.embedded_llm_threads,
                batch_threads=settings.embedded_llm_batch_threads,
                parallel=settings.embedded_llm_parallel,
                context_tokens=settings.embedded_llm_context_tokens,
                flash_attention=settings.embedded_llm_flash_attention,
            )
        self._injected = chat_model
        self._chat_model = chat_model
        self._lock = threading.Lock()
        slots = settings.embedded_llm_parallel if self.embedded else settings.llm_max_concurrency
        self._slots = threading.BoundedSemaphore(slots)

    @contextmanager
    def call_slot(self) -> Iterator[None]:
        """Hold one of the server's slots for a call, so queued calls do not time out."""
        with self._slots:
            yield

    @property
    def model_name(self) -> str:
        if self._injected is not None:
            name = getattr(self._injected, "model_name", None)
            return str(name or type(self._injected).__name__)
        if self.settings.llm_backend == "embedded":
            return EMBEDDED_MODEL_NAME
        return str(self.settings.llm_model or self.settings.llm_backend)

    @property
    def base_url(self) -> str | None:
        """The OpenAI-compatible endpoint, if any (starts the embedded server)."""
        if self.embedded is not None:
            return self.embedded.base_url()
        if self._injected is not None:
            url = getattr(self._injected, "openai_api_base", None)
            return str(url) if url else None
        return self.settings.llm_base_url if self.settings.llm_backend == "openai" else None

    def chat_model(self) -> BaseChatModel:
        """Built on first use: the embedded server only starts when a summary is asked for."""
        with self._lock:
            if self._chat_model is None:
                self._chat_model = self._build()
            return self._chat_model

    def _build(self) -> BaseChatModel:
        s = self.settings
        if s.llm_backend == "fake":
            return scripted([EMPTY_SUMMARY])
        api_key = s.llm_api_key.get_secret_value() if s.llm_api_key else "not-needed"
        return ChatOpenAI(
            base_url=self.base_url,
            api_key=api_key,
            model=self.model_name,
            temperature=s.llm_temperature,
            max_tokens=s.llm_max_output_tokens,
            timeout=s.llm_timeout_seconds,
            # The OpenAI client retries connection errors, 429 and 5xx with exponential
            # backoff; bounded here.
            max_retries=s.llm_max_retries,
            # Streamed answers (the chat's SSE) end with a usage chunk, so their tokens are
            # recorded like those of plain calls.
            stream_usage=True,
            cache=self._cache,
        )

    def health(self) -> str:
        """'ok', 'idle' (embedded, not started yet) or why the server is unreachable."""
        if self.embedded is not None and not self.embedded.started:
            return "idle (starts on first use)"
        url = self.base_url
        if url is None:  # a fake
            return "ok"
        try:
            r = httpx.get(f"{url}/models", timeout=3.0, headers=self._auth_headers())
            return "ok" if r.status_code == 200 else f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            return f"unreachable: {type(exc).__name__}"

    def _auth_headers(self) -> dict[str, Any]:
        key = self.settings.llm_api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
