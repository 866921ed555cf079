"""Keyset pagination, one cursor style for every list route.

A cursor is opaque to clients: URL-safe base64 (unpadded) of `kind|key|key...`, where
`kind` names the list (so a cursor of one list is refused by another) and the keys are
the sort key of the last row a page showed. A page asks for one row more than it shows:
the extra row tells whether a next page exists, and no count query is needed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from service.core.errors import ErrorDetail, InvalidRequest

T = TypeVar("T")

CURSOR_DOC = "`next_cursor` of the previous page"


def invalid_cursor() -> InvalidRequest:
    return InvalidRequest("The cursor is not one this API returned.",
                          [ErrorDetail(code="invalid_cursor", message="unreadable cursor",
                                       field="cursor")])


def encode_cursor(kind: str, *keys: object) -> str:
    raw = "|".join([kind, *(str(key) for key in keys)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _raw(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor() from None


def decode_cursor(
    cursor: str, kind: str, keys: int, legacy: Callable[[str], list[str]] | None = None,
) -> list[str]:
    """The `keys` key strings of a cursor this API issued for the list `kind`.

    The last key takes the rest of the text, so it may itself contain `|`. `legacy`
    reads a cursor in a list's older format (it raises `ValueError` on anything else).
    Whatever cannot be read is a 422 `validation_error` with an `invalid_cursor` detail.
    """
    raw = _raw(cursor)
    found, _, rest = raw.partition("|")
    parts = rest.split("|", keys - 1) if found == kind else []
    if len(parts) == keys and all(parts):
        return parts
    if legacy is not None:
        try:
            return legacy(raw)
        except ValueError:
            pass
    raise invalid_cursor()


def parse_key(text: str, parse: Callable[[str], T]) -> T:
    """One key of a decoded cursor as its type; a key that does not parse is invalid."""
    try:
        return parse(text)
    except ValueError:
        raise invalid_cursor() from None


def paginate(
    rows: Sequence[T], limit: int, kind: str, key: Callable[[T], tuple[object, ...]],
) -> tuple[list[T], str | None]:
    """The page of a `limit + 1` query, and the cursor of the next one (None: the last)."""
    page, more = list(rows[:limit]), len(rows) > limit
    return page, encode_cursor(kind, *key(page[-1])) if more and page else None
