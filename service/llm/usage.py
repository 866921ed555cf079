"""The token counts a model server reports for one answer (or one streamed piece)."""

from __future__ import annotations

from typing import Any, NamedTuple


class TokenUsage(NamedTuple):
    prompt_tokens: int
    output_tokens: int


NO_USAGE = TokenUsage(0, 0)


def token_usage(message: object) -> TokenUsage | None:
    """What LangChain put in the message's `usage_metadata`; None when the server said
    nothing (a fake, a stream piece before the last, a missing message)."""
    usage: Any = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    return TokenUsage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))
