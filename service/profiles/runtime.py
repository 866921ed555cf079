"""What refreshes, edits and recommendations run with besides a session, built once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from service.profiles.merge import DecayRules
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore


class UserLocks:
    """One refresh or edit per user at a time inside this process.

    Across processes the profile row lock does the same job; this one only spares
    a second, redundant LLM call when two requests for one user arrive together.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}

    @contextmanager
    def hold(self, user_pk: int) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(user_pk, threading.Lock())
        with lock:
            yield


@dataclass
class ProfileRuntime:
    """What refreshes and edits need besides a session; built once per app."""

    settings: Settings
    llm: LLMRuntime
    embedder: Embedder
    vectors: VectorStore
    clock: Callable[[], datetime]
    locks: UserLocks = field(default_factory=UserLocks)
    models: Any = None  # the app's service.training.store.ModelRegistry (recommend reads it)

    @property
    def rules(self) -> DecayRules:
        return rules_from(self.settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProfileRuntime:
        """What a process outside the API (a CLI command, a worker, a Ray task) refreshes
        with: its own LLM runtime (close it with `rt.llm.close()`), embedder and vector
        store, on the wall clock."""
        from service.core.db import utcnow
        from service.vectors.embeddings import embedder_for

        return cls(settings, LLMRuntime(settings), embedder_for(settings),
                   VectorStore.for_settings(settings),
                   utcnow)


def rules_from(settings: Settings) -> DecayRules:
    return DecayRules(
        half_life_short=timedelta(days=settings.half_life_short_days),
        half_life_long=timedelta(days=settings.half_life_long_days),
        match_threshold=settings.facet_match_threshold,
        reinforcement=settings.reinforcement_rate,
        promote_after=settings.promote_after_reinforcements,
        promote_span=timedelta(days=settings.promote_span_days),
        archive_below=settings.archive_below,
        max_evidence=settings.max_facet_evidence,
        displacement=settings.displacement_rate,
    )
