"""Types every domain's request models share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AwareDatetime, BeforeValidator, StringConstraints

# A facet's words and kinds (DESIGN.md §4): the summarizer writes them, the profile keeps
# them, and a user's edit is held to the same bounds.
LABEL_MAX = 60
DESCRIPTION_MAX = 120
Horizon = Literal["short", "long"]
Polarity = Literal["like", "avoid"]

EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=~-]{0,127}$"

# Ids chosen by the platform (users, items, events): safe in a URL path, at most 128 chars.
ExternalId = Annotated[str, StringConstraints(pattern=EXTERNAL_ID_PATTERN)]


def _iso_string_only(value: Any) -> Any:
    """Refuse numbers: a bare number is ambiguous (seconds? milliseconds?)."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO-8601 string with a time zone")
    return value


# ISO-8601 with an explicit zone ("2026-01-02T03:04:05Z" or "+01:00").
ZonedTimestamp = Annotated[AwareDatetime, BeforeValidator(_iso_string_only)]


UserIdPath = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN, description="the platform's user id")]
ItemIdPath = Annotated[str, Path(pattern=EXTERNAL_ID_PATTERN, description="the platform's item id")]
