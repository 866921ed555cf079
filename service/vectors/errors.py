"""What a request answers when the vector store does not: one 503, one code, one message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.core.errors import vector_store_unavailable


@contextmanager
def vector_store_call() -> Iterator[None]:
    """Any client error inside the block becomes `503 vector_store_unavailable`
    (`core.errors.vector_store_unavailable` words it).

    Chroma's clients raise many unrelated types (connection, HTTP, Rust backend), so
    every exception counts. Callers wrap only what they call before writing anything,
    which is what lets the message say nothing changed.
    """
    try:
        yield
    except Exception as exc:  # any client error
        raise vector_store_unavailable(exc) from exc
