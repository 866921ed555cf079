"""What a summary run read, and how untrusted text is quoted into prompts."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from service.ingest.models import Event


def untrusted(text: str, limit: int) -> str:
    """User or catalog text as a quoted JSON string that cannot close our delimiters."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("<", "‹").replace(">", "›")
    return json.dumps(text, ensure_ascii=False)


@dataclass
class Activity:
    """The events one run read, oldest first (grouped or not: all count as read)."""

    events: list[Event] = field(default_factory=list)

    @property
    def first(self) -> Event | None:
        return self.events[0] if self.events else None

    @property
    def last(self) -> Event | None:
        return self.events[-1] if self.events else None
