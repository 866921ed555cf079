"""How user- and catalog-written text is quoted into a prompt (DESIGN.md §6)."""

from __future__ import annotations

import json
import re


def untrusted(text: str, limit: int) -> str:
    """User or catalog text as a quoted JSON string that cannot close our delimiters."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("<", "‹").replace(">", "›")
    return json.dumps(text, ensure_ascii=False)
