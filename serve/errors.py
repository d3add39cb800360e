"""The error envelope of DESIGN.md section 7, request ids, and the handlers that keep 500s out.

Below the entry points nothing knows HTTP: the domain and the store raise `schema.errors` classes, which
`REFUSALS` maps to a status and a code, here and nowhere else. Routes raise `ApiError` for what they parse.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from schema.errors import (
    ChunkOutOfOrder,
    Conflict,
    DomainError,
    EventIdReused,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
)
from serve.bodylimit import BodyTooLarge
from store.outage import backing_service_down

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 8 * 1024 * 1024
RETRY_AFTER_UNAVAILABLE_S = 5

_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 422: "VALIDATION_ERROR",
    429: "RATE_LIMITED", 503: "UNAVAILABLE",
}


# The status and code of each domain refusal; the most specific class of an error listed here wins.
REFUSALS: dict[type[DomainError], tuple[int, str]] = {
    NotFound: (404, "NOT_FOUND"),
    Conflict: (409, "CONFLICT"),
    InvalidInput: (422, "VALIDATION_ERROR"),
    EventIdReused: (409, "DUPLICATE_EVENT"),
    ChunkOutOfOrder: (409, "CHUNK_OUT_OF_ORDER"),
    IdempotencyKeyReused: (409, "IDEMPOTENCY_KEY_REUSED"),
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None,
                 details: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "ERROR")
        self.message = message
        self.details = details or []
        self.headers = headers

    @classmethod
    def refusal(cls, exc: DomainError) -> "ApiError":
        """The answer to a domain refusal (`REFUSALS`); a class it does not list is a bug, answered as one (500).

        >>> e = ApiError.refusal(EventIdReused("an event id was reused", [{"field": "x", "message": "reused"}]))
        >>> e.status, e.code, e.message
        (409, 'DUPLICATE_EVENT', 'an event id was reused')
        """
        for kind in type(exc).__mro__:
            if kind in REFUSALS:
                status, code = REFUSALS[kind]
                return cls(status, exc.message, code=code, details=exc.details)
        log.error("no status for the refusal %s: %s", type(exc).__name__, exc.message)
        return cls(500, "internal error", code="INTERNAL")


def envelope(code: str, message: str, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


_UNION_TAG_ERRORS = {"union_tag_invalid", "union_tag_not_found"}


def _location(error: Mapping[str, Any]) -> tuple[Any, ...]:
    loc = tuple(error.get("loc", ()))
    if error.get("type") in _UNION_TAG_ERRORS:
        # Pydantic places a bad discriminator at the object; the field at fault is the tag itself.
        tag = str((error.get("ctx") or {}).get("discriminator", "")).strip("'\"")
        if tag:
            loc += (tag,)
    return loc


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"field": _field(_location(e)), "message": str(e.get("msg", ""))} for e in errors[:50]]


def install(app: FastAPI) -> None:
    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        # A streamed body passed its limit while the handler read it (serve/bodylimit.py counts the bytes).
        return JSONResponse(envelope("PAYLOAD_TOO_LARGE", "body too large",
                                     [{"field": "body", "message": "larger than this endpoint accepts"}]),
                            status_code=413, headers={"Connection": "close"})

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(envelope(exc.code, exc.message, exc.details), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(DomainError)
    async def refused(request: Request, exc: DomainError) -> JSONResponse:
        return await api_error(request, ApiError.refusal(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(envelope("VALIDATION_ERROR", "request is invalid", validation_details(exc.errors())),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "ERROR")
        return JSONResponse(envelope(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if backing_service_down(exc):
            # PostgreSQL or NATS is down or restarting: not the client's fault, and not a bug; retry soon.
            log.warning("backing service unavailable (request %s): %s", getattr(request.state, "request_id", "-"),
                        type(exc).__name__)
            return JSONResponse(envelope("UNAVAILABLE", "a backing service is unavailable; retry shortly"),
                                status_code=503, headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)})
        log.exception("unhandled error (request %s)", getattr(request.state, "request_id", "-"))
        return JSONResponse(envelope("INTERNAL", "internal error"), status_code=500)
