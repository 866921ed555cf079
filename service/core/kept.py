"""A thread-safe, bounded, expiring in-process store of answers (cachetools' TTLCache
behind one lock): what serving keeps between a user's requests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")


class Kept(Generic[V]):
    """Values by key, `size` of them at most (each counted by `sizeof`, 1 by default;
    least recently used out) and none older than `seconds`."""

    def __init__(self, size: int, seconds: float,
                 sizeof: Callable[[V], int] | None = None) -> None:
        self._lock = threading.Lock()
        self._kept: TTLCache[Hashable, V] = TTLCache(maxsize=size, ttl=seconds,
                                                     getsizeof=sizeof)

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            return self._kept.get(key)

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._kept[key] = value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
