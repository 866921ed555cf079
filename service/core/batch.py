"""All-or-nothing batches: read the body, validate every record, report every problem."""

from __future__ import annotations

import json
from collections.abc import Hashable
from functools import cache
from typing import Any, TypeVar, cast

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from service.core.errors import ApiError, ErrorDetail, InvalidRequest, detail_from_pydantic

T = TypeVar("T")


async def read_batch(request: Request, key: str, max_records: int) -> list[Any]:
    """The list under `key` in a JSON object body, checked for shape and size only."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise InvalidRequest(f'The body must be an object {{"{key}": [...]}}.',
                             [ErrorDetail(code="missing", message="a list is required", field=key)])
    extra = sorted(set(body) - {key})
    if extra:
        raise InvalidRequest("Unknown top-level fields.",
                             [ErrorDetail(code="extra_forbidden", message="not allowed", field=name)
                              for name in extra])
    records: list[Any] = body[key]
    if not records:
        raise InvalidRequest(f"'{key}' is empty.",
                             [ErrorDetail(code="too_short", message="at least one record",
                                          field=key)])
    if len(records) > max_records:
        raise ApiError(413, "batch_too_large",
                       f"At most {max_records} {key} per request; got {len(records)}.")
    return records


def validate_records(
    records: list[Any], model: type[T]
) -> tuple[list[tuple[int, T]], list[ErrorDetail]]:
    """Validate every record so that each bad one is named by index (valid ones returned)."""
    try:  # the common case, a clean batch, in one call
        return list(enumerate(_list_adapter(cast(Hashable, model)).validate_python(records))), []
    except ValidationError:
        pass
    adapter = _adapter(cast(Hashable, model))
    good: list[tuple[int, T]] = []
    problems: list[ErrorDetail] = []
    for index, record in enumerate(records):
        try:
            good.append((index, adapter.validate_python(record)))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                detail = detail_from_pydantic(dict(err))
                detail.index = index
                problems.append(detail)
    return good, problems


@cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


@cache
def _list_adapter(model: Any) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])


def raise_if_problems(problems: list[ErrorDetail]) -> None:
    if problems:
        bad = len({p.index for p in problems})
        raise InvalidRequest(f"{bad} record(s) are invalid; nothing was written.", problems)
