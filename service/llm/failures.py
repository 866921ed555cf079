"""What counts as the model failing, decided once for every caller.

Whatever a model call raises means the model gave no answer: the server is down,
timed out, answered 5xx, the embedded server did not start, or the client choked on
the reply. `model_call()` turns all of that into `LLMUnavailable`, and each caller
decides what that means for its user (chat: a 503; explanations: the template; a
refresh: a failed run, the user stays stale). An answer cut off at the length limit
is `AnswerCutOff` instead: the server is fine, and a shorter answer may be asked for.
Both are `NoAnswer`, for callers to whom the difference does not matter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import openai

from service.llm.usage import TokenUsage


def describe(exc: BaseException, limit: int = 500) -> str:
    """"ConnectionError: refused", bounded (it is stored with the run or the item)."""
    return f"{type(exc).__name__}: {exc}"[:limit]


class NoAnswer(Exception):
    """A model call gave nothing to use; `cause` is what the call raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(describe(cause))
        self.cause = cause


class LLMUnavailable(NoAnswer):
    """The model could not answer (down, timed out, failed on its side or on the way)."""


class AnswerCutOff(NoAnswer):
    """The answer stopped at the output limit (mid-JSON): unusable, but the server is fine.

    `usage` is what the server reported for the cut answer, if anything.
    """

    def __init__(self, cause: BaseException, usage: TokenUsage | None) -> None:
        super().__init__(cause)
        self.usage = usage


@contextmanager
def model_call() -> Iterator[None]:
    """Wrap everything that reaches the model (building the client and starting the
    embedded server included), so a failure surfaces as one of the two types above."""
    try:
        yield
    except NoAnswer:
        raise
    except openai.LengthFinishReasonError as exc:
        usage = exc.completion.usage
        raise AnswerCutOff(exc, TokenUsage(usage.prompt_tokens, usage.completion_tokens)
                           if usage else None) from exc
    except Exception as exc:  # transport errors, timeouts, 5xx, a reply the client refused
        raise LLMUnavailable(exc) from exc
