"""One error shape for every failure: `{"error": {"code", "message", "details"}}`.

Codes are stable and machine-readable; messages are for people.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """One problem with one part of the request (`index` is the record in a batch)."""

    code: str
    message: str
    field: str | None = None
    index: int | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """An error answered as the error shape: HTTP `status`, stable `code`, a message.

    Raise the typed subclasses below for the recurring kinds; each fixes its status
    once, so a call site names what went wrong and never a number.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


class NotFound(ApiError):
    """404: nothing with this id in this tenant (`user_not_found`, `item_not_found` ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(404, code, message)


class Conflict(ApiError):
    """409: the request contradicts what is stored (`event_conflict`, `no_activity` ...)."""

    def __init__(self, code: str, message: str, details: list[ErrorDetail] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(409, code, message, details, headers)


class Unavailable(ApiError):
    """503: a dependency (database, vector store, embedder, model server) did not answer,
    or is busy; nothing was changed and a retry may succeed."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(503, code, message, headers=headers)


class InvalidRequest(ApiError):
    """422 `validation_error`, the code FastAPI's own validation answers with, for what
    only the service can check (a batch's records, a cursor); `details` name each part."""

    def __init__(self, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(422, "validation_error", message, details)


def vector_store_unavailable(exc: BaseException) -> Unavailable:
    return Unavailable("vector_store_unavailable",
                       f"The vector store did not answer ({type(exc).__name__}); nothing changed.")


def embedder_unavailable(what: str, exc: BaseException) -> Unavailable:
    """`what` is what could not be embedded ("the edited facet")."""
    return Unavailable("embedder_unavailable", f"Could not embed {what} ({type(exc).__name__}).")


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details or []))
    return JSONResponse(
        status_code=status, content=body.model_dump(), headers=headers
    )


def detail_from_pydantic(err: dict[str, Any], *, skip: int = 0) -> ErrorDetail:
    """Turn one pydantic error into a detail; an int in `loc` is a batch index."""
    loc = list(err.get("loc", ()))[skip:]
    index: int | None = None
    if loc and isinstance(loc[0], int):
        index = loc.pop(0)
    field = ".".join(str(part) for part in loc) or None
    return ErrorDetail(code=str(err.get("type", "invalid")), message=str(err.get("msg")),
                       field=field, index=index)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or unknown API key"},
    404: {"model": ErrorResponse, "description": "Not found in this tenant"},
    413: {"model": ErrorResponse, "description": "Body or batch too large"},
    422: {"model": ErrorResponse, "description": "Invalid request; every bad record listed"},
}


def _answer(exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors():
            loc = list(err.get("loc", ()))
            # ("body", "events", 3, "ts") -> index 3, field "ts"; ("query", "limit") -> "limit"
            skip = 2 if loc[:1] == ["body"] and len(loc) > 2 and isinstance(loc[2], int) else 1
            details.append(detail_from_pydantic(err, skip=skip))
        return error_response(422, "validation_error", "The request is not valid.", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # A connection lost mid-request (the server restarted, or it was terminated):
        # the pool has dropped it, nothing was committed, and a retry gets a new one.
        if exc.connection_invalidated:
            log.warning("database connection lost on %s %s: %s", request.method,
                        request.url.path, exc.orig)
            return _answer(Unavailable("database_unavailable",
                                       "The database connection was lost; retry.",
                                       headers={"Retry-After": "1"}))
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "Something went wrong on our side.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "Something went wrong on our side.")
