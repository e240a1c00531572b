"""`POST /v1/collect/{segment,posthog,rudderstack}`: webhooks for the collection tools.

Point Segment's Webhooks destination (classic or Actions), PostHog's webhook destination or
RudderStack's webhook destination at these with an `Authorization: Bearer <key>` header:
the key's tenant owns the users, as on every other route. A body is read by the format's
reader (doxa.events.formats), its users namespaced by tenant, and its events appended to
the durable per-user buffer (`Engine.add_many`); the answer (202) comes as soon as they
are stored, and `doxa worker` extracts them later, when a user's buffer is worth a call.
So a collection tool's delivery never waits on the model provider, and a retried delivery
changes nothing (events are buffered once by id).

Segment signs each request when the destination has a shared secret: `X-Signature` is the
hex HMAC-SHA1 of the body under that secret. With a secret configured for a tenant
(`DOXA_SEGMENT_SECRETS=tenant:secret,...`), that tenant's Segment requests without a valid
signature get 401 and nothing is stored; without one, the header is not looked at.
"""

# No `from __future__ import annotations`: FastAPI reads the route's annotations.

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field

from doxa.errors import ApiError, ConfigError, DoxaError, InvalidEventError, InvalidEventsError
from doxa.events.fields import tenant_scoped_user_ids
from doxa.events.formats import read_payload
from doxa.events.parse import Event
from doxa.server.auth import TENANT_PATTERN
from doxa.server.problems import FieldError, doxa_error, responses
from doxa.server.routes import ServerState, State, Writer
from doxa.server.settings import ServerLimits
from doxa.server.tenancy import SEPARATOR, scoped

__all__ = ["SOURCES", "CollectResult", "build_collect_router", "parse_segment_secrets",
           "segment_signature"]

SOURCES: Mapping[str, str] = {
    "segment": "Segment's Webhooks destination (classic or Actions): one call, a JSON "
               "array of calls (Actions batching) or an HTTP API `{\"batch\": [...]}` body.",
    "posthog": "PostHog's webhook destination (`{\"event\": {...}, \"person\": {...}}`), a "
               "capture-API event, a `{\"batch\": [...]}` body or a JSON array of events.",
    "rudderstack": "RudderStack's webhook destination: one event, a JSON array of events or "
                   "a `{\"batch\": [...]}` body.",
}
COLLECT = responses(400, 401, 403, 413, 415, 422, 503)
_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
        "description": "the collection tool's own payload, as it sends it"}}}}}


class CollectResult(BaseModel):
    """What a webhook delivery stored: events are extracted later, by `doxa worker`."""

    events_received: int = Field(description="events the payload held")
    events_new: int = Field(description="of those, events not buffered or ingested before "
                            "(a redelivery adds none)")


def segment_signature(body: bytes, secret: str) -> str:
    """What Segment sends as `X-Signature`: the hex HMAC-SHA1 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def parse_segment_secrets(value: str) -> dict[str, str]:
    """`DOXA_SEGMENT_SECRETS`: `tenant:secret` pairs, comma separated."""
    secrets: dict[str, str] = {}
    for n, item in enumerate((i.strip() for i in value.split(",")), start=1):
        if not item:
            continue
        tenant, sep, secret = item.partition(":")
        if not sep or not secret:
            raise ConfigError(f"DOXA_SEGMENT_SECRETS item {n}: expected tenant:secret")
        if tenant in secrets:
            raise ConfigError(f"DOXA_SEGMENT_SECRETS item {n}: tenant '{tenant}' twice")
        if not _is_tenant(tenant):
            raise ConfigError(f"DOXA_SEGMENT_SECRETS item {n}: tenant '{tenant}' must match "
                              f"{TENANT_PATTERN}")
        secrets[tenant] = secret
    return secrets


def build_collect_router(limits: ServerLimits, segment_secrets: Mapping[str, str]) -> APIRouter:
    """The three webhook routes, over the engine's buffer."""
    router = APIRouter(prefix="/v1/collect", tags=["collect"])
    for source, described in SOURCES.items():
        _add_route(router, source, described, limits, segment_secrets)
    return router


def _add_route(router: APIRouter, source: str, described: str, limits: ServerLimits,
               segment_secrets: Mapping[str, str]) -> None:
    signed = source == "segment"

    async def collect(request: Request, caller: Writer, st: State,
                      x_signature: Annotated[str | None, Header(
                          include_in_schema=signed,
                          description="hex HMAC-SHA1 of the body under the shared secret "
                                      "(checked when one is configured for the tenant)")]
                      = None) -> CollectResult:
        body = await request.body()
        if signed and caller.tenant in segment_secrets:
            _check_signature(body, x_signature, segment_secrets[caller.tenant])
        payload = _json(body)
        try:
            events = read_payload(payload, source)
        except (InvalidEventsError, InvalidEventError) as exc:
            raise _refused(exc, payload) from None
        if len(events) > limits.max_events:
            message = f"{len(events)} events; at most {limits.max_events} per request"
            raise ApiError(422, "invalid-request", message, errors=[FieldError(
                field="body", location="body", message=message, type="too_long")])
        scoped_events = [e.model_copy(update={"user_id": scoped(caller.tenant, e.user_id)})
                         for e in events]
        new = await _buffer(st, scoped_events, caller.tenant)
        return CollectResult(events_received=len(events), events_new=new)

    collect.__doc__ = (f"{described}\n\nThe events are stored durably and extracted later; "
                       "the answer comes as soon as they are stored. Sending the same "
                       "events again stores nothing twice.")
    router.add_api_route(f"/{source}", collect, methods=["POST"], status_code=202,
                         responses=COLLECT, operation_id=f"collect_{source}",
                         summary=f"Collect {source.capitalize()} events",
                         openapi_extra=_BODY_SCHEMA, name=f"collect_{source}")


def _check_signature(body: bytes, header: str | None, secret: str) -> None:
    if not header:
        raise ApiError(401, "bad-signature", "no X-Signature header: this tenant's Segment "
                       "deliveries must be signed with its shared secret")
    expected = segment_signature(body, secret)
    if not hmac.compare_digest(expected, header.strip().lower()):
        raise ApiError(401, "bad-signature", "X-Signature does not match the body under "
                       "this tenant's shared secret; nothing was stored")


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed-body", f"the body is not valid JSON ({exc.msg} at "
                       f"position {exc.pos})") from None
    except RecursionError:
        raise ApiError(400, "malformed-body", "the body is nested too deeply to read") from None


def _refused(exc: InvalidEventsError | InvalidEventError, payload: object) -> ApiError:
    """Each bad message named where it is in the body, by the format's field names."""
    found = exc.errors if isinstance(exc, InvalidEventsError) else [exc]
    container = ("batch" if isinstance(payload, Mapping) and isinstance(payload.get("batch"),
                                                                        list)
                 else "event" if isinstance(payload, Mapping) and isinstance(
                     payload.get("event"), Mapping) else "")
    errors = [FieldError(field=_field_path(container, e.index, field), location="body",
                         message=message, type="invalid_event")
              for e in found for field, message in e.problems]
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return ApiError(422, "invalid-events", f"nothing was stored: {summary}", errors=errors)


def _field_path(container: str, index: int | None, field: str | None) -> str:
    """`batch[2].messageId`, `[2].timestamp` (a JSON array), `event.distinct_id`, `userId`."""
    head = f"{container}[{index}]" if index is not None else container
    if not field:
        return head or "body"
    return f"{head}.{field}" if head else field


async def _buffer(st: ServerState, events: list[Event], tenant: str) -> int:
    """Append to the durable buffer; a doxa error as a problem that names no store id."""
    try:
        with tenant_scoped_user_ids():
            added = await st.engine.add_many(events)
    except DoxaError as exc:
        err = doxa_error(exc)
        err.detail = err.detail.replace(f"{tenant}{SEPARATOR}", "")
        raise err from None
    return added


def _is_tenant(value: str) -> bool:
    return re.fullmatch(TENANT_PATTERN, value) is not None
