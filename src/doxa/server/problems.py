"""Errors as RFC 9457 problem details (`application/problem+json`) that name the field.

Every error the server sends has the same shape: `type` (a stable `urn:doxa:problem:*`
a client can branch on), `title`, `status`, `detail` (what to fix), `instance` (the
path) and, for validation errors, `errors`: one entry per problem with the field named
the way a client writes it (`events[3].timestamp`, `min_confidence`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from doxa import errors as doxa_errors
from doxa.errors import ApiError, DoxaError, InvalidEventError, InvalidEventsError

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
DEFAULT_RETRY_AFTER_S = 5


class FieldError(BaseModel):
    """One validation problem: which field, where it was sent, and what is wrong."""

    field: str = Field(description="the field as a client writes it, e.g. events[3].timestamp")
    location: str = Field(description="body, query, path or header")
    message: str
    type: str = Field(description="a machine-readable error type, e.g. missing, too_long")


class Problem(BaseModel):
    """An error response (RFC 9457 problem details)."""

    type: str = Field(description="a stable URN naming the kind of problem")
    title: str
    status: int
    detail: str = ""
    instance: str | None = None
    errors: list[FieldError] | None = None


def problem(status: int, slug: str, detail: str, *, instance: str | None = None,
            errors: Sequence[FieldError] | None = None) -> Problem:
    return Problem(type=f"urn:doxa:problem:{slug}", title=HTTPStatus(status).phrase,
                   status=status, detail=detail, instance=instance,
                   errors=list(errors) if errors is not None else None)


def problem_bytes(status: int, slug: str, detail: str, instance: str | None = None) -> bytes:
    """The body of a problem response, for middleware that answers without FastAPI."""
    return problem(status, slug, detail, instance=instance).model_dump_json(
        exclude_none=True).encode()


def problem_response(request: Request, err: ApiError) -> JSONResponse:
    body = problem(err.status, err.slug, err.detail, instance=request.url.path,
                   errors=err.errors)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=err.status,
                        media_type=MEDIA_TYPE, headers=err.headers)


def field_name(loc: Sequence[int | str]) -> tuple[str, str]:
    """("body", "events", 3, "timestamp") → ("events[3].timestamp", "body")."""
    where = str(loc[0]) if loc else "body"
    name = ""
    for part in loc[1:]:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or where, where


def validation_error(exc: RequestValidationError) -> ApiError:
    """FastAPI's validation errors as one problem; malformed JSON is a 400 of its own."""
    raw: list[dict[str, Any]] = list(exc.errors())
    for err in raw:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "not valid JSON")
            where = err["loc"][-1] if len(err.get("loc", ())) > 1 else "?"
            return ApiError(400, "malformed-body",
                            f"the body is not valid JSON ({reason} at position {where})")
    errors = []
    for err in raw:
        name, where = field_name(err.get("loc", ()))
        message = ("is required" if err.get("type") == "missing"
                   else str(err.get("msg", "")).removeprefix("Value error, "))
        errors.append(FieldError(field=name, location=where, message=message,
                                 type=str(err.get("type", "invalid"))))
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return ApiError(422, "invalid-request", f"the request is invalid: {summary}", errors=errors)


def invalid_events(exc: InvalidEventsError | InvalidEventError) -> ApiError:
    """doxa's own event validation (e.g. one id used twice with different content)."""
    found = exc.errors if isinstance(exc, InvalidEventsError) else [exc]
    errors = [
        FieldError(field=f"events[{e.index}]" + (f".{field}" if field else "")
                   if e.index is not None else "events",
                   location="body", message=message, type="invalid_event")
        for e in found for field, message in e.problems
    ]
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return ApiError(422, "invalid-events", f"nothing was ingested: {summary}", errors=errors)


def doxa_error(exc: DoxaError) -> ApiError:
    """What a doxa error means to an API caller (details that name store ids are not sent)."""
    if isinstance(exc, doxa_errors.InvalidObservationError):
        return ApiError(422, "invalid-observation", str(exc), errors=[FieldError(
            field=exc.field or "body", location="body", message=exc.reason,
            type="invalid_observation")])
    if isinstance(exc, InvalidEventsError | InvalidEventError):
        return invalid_events(exc)
    if isinstance(exc, doxa_errors.UnknownRecordError):
        return ApiError(404, "not-found", f"no record {exc.record_id} for this user")
    if isinstance(exc, doxa_errors.ProviderAuthError):
        return ApiError(502, "provider-refused", "the model provider refused the request; "
                        "the server's provider configuration needs fixing")
    if isinstance(exc, doxa_errors.ProviderError):
        wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_S
        return ApiError(503, "provider-unavailable", "the model provider is unavailable or "
                        "rate limited; nothing was ingested, retry later",
                        headers={"Retry-After": str(max(1, math.ceil(wait)))})
    if isinstance(exc, doxa_errors.ExtractionValidationError):
        return ApiError(502, "extraction-invalid", "the model's answer could not be used even "
                        "after re-asking; nothing was ingested")
    if isinstance(exc, doxa_errors.UserErasedError):
        return ApiError(409, "user-erased", "the user was deleted while this request was in "
                        "flight; nothing from it was stored (send it again to start a new "
                        "model for this user id)")
    if isinstance(exc, doxa_errors.StoreDataError):
        log.warning("the store refused a value: %s", exc)
        return ApiError(422, "unstorable-value", "the store cannot hold a value in this "
                        "request (e.g. a NUL character); nothing was stored")
    if isinstance(exc, doxa_errors.StoreConflictError):
        return ApiError(503, "busy", "the user's model is being written by others; retry",
                        headers={"Retry-After": "1"})
    if isinstance(exc, doxa_errors.StoreError):
        return ApiError(503, "store-unavailable", "the store is unavailable; retry later",
                        headers={"Retry-After": str(DEFAULT_RETRY_AFTER_S)})
    if isinstance(exc, doxa_errors.ConfigError):
        log.error("server misconfigured: %s", exc)
        return ApiError(503, "misconfigured", "the server is not configured to do this")
    log.exception("unexpected doxa error", exc_info=exc)
    return ApiError(500, "internal", "an internal error occurred")


def install(app: FastAPI) -> None:
    """Route every error the app can raise to a problem response."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return problem_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(request, validation_error(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return problem_response(request, ApiError(exc.status_code, slug, detail,
                                                  headers=exc.headers))

    async def on_doxa(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DoxaError)
        return problem_response(request, doxa_error(exc))

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path,
                      exc_info=exc)
        return problem_response(request, ApiError(500, "internal", "an internal error occurred"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DoxaError, on_doxa)
    app.add_exception_handler(Exception, on_crash)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route can send."""
    described = {
        400: "The body is not valid JSON or UTF-8, or a header that must be sent once "
             "(Authorization) was sent twice.",
        401: "No API key, or one the server does not know.",
        403: "The key lacks the scope this operation needs.",
        404: "No such user or record for this tenant.",
        409: "The user was deleted while the request was in flight; nothing was stored.",
        413: "The body is larger than the server accepts.",
        415: "The body is not JSON.",
        422: "A field is invalid; `errors` names each one.",
        502: "The model provider refused the request or answered unusably.",
        503: "The provider or store is unavailable, or the server is busy; see Retry-After.",
    }
    return {s: {"description": described[s], "model": Problem,
                "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for s in statuses}
