"""`create_app(engine, keys)`: the FastAPI application behind `doxa serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from doxa import __version__
from doxa.engine import Engine
from doxa.server import problems
from doxa.server.auth import KeyRing
from doxa.server.collect import build_collect_router
from doxa.server.gate import Gate
from doxa.server.reads import RenderedReads
from doxa.server.routes import IngestSlots, ServerState, build_router
from doxa.server.settings import ServerLimits

DESCRIPTION = """\
doxa's user models over HTTP, for delivery code in any language: ingest a user's events,
read their beliefs, goals and preferences with confidence and evidence, explain a record,
and feed delivery outcomes back.

Every `/v1/users/...` and `/v1/collect/...` call needs an API key, `Authorization: Bearer
<key>`. A key belongs to one tenant and sees only that tenant's users. Errors are
`application/problem+json`.

The `/v1/collect/...` webhooks take Segment, PostHog and RudderStack payloads as those tools
send them, store the events durably and answer at once; the events are extracted later.
"""


def create_app(engine: Engine, keys: KeyRing, limits: ServerLimits | None = None, *,
               close_engine: bool = False,
               segment_secrets: Mapping[str, str] | None = None) -> FastAPI:
    """The API over `engine`; `close_engine` closes it when the app shuts down;
    `segment_secrets` (tenant -> shared secret) makes those tenants' Segment webhook
    deliveries need a valid signature."""
    limits = limits or ServerLimits()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not close_engine:
            yield
            return
        async with engine:
            yield

    # /docs (Swagger UI) and /redoc load their scripts and styles from the installed
    # fastapi-offline package, not a CDN: an explorer that works offline and behind firewalls.
    app = FastAPIOffline(title="doxa", version=__version__, description=DESCRIPTION,
                         lifespan=lifespan)
    app.state.doxa = ServerState(engine=engine, limits=limits,
                                 slots=IngestSlots(limits.max_concurrent_ingests,
                                                   limits.max_queued_ingests),
                                 reads=RenderedReads(limits.read_cache_bytes))
    app.include_router(build_router(limits))
    app.include_router(build_collect_router(limits, dict(segment_secrets or {})))
    problems.install(app)
    app.add_middleware(Gate, keys=keys, max_body_bytes=limits.max_body_bytes)
    # Every route is in: the document is made (and finished) now, and FastAPI serves the
    # one it holds, so no method of the app is replaced.
    app.openapi_schema = _finish(app.openapi(), limits)
    return app


def _finish(doc: dict[str, Any], limits: ServerLimits) -> dict[str, Any]:
    """State the events-per-request limit; errors are documented as problem+json only."""
    doc["components"]["schemas"]["EventBatch"]["properties"]["events"]["maxItems"] = (
        limits.max_events)
    for operations in doc["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status >= "400" and problems.MEDIA_TYPE in response.get("content", {}):
                    response["content"].pop("application/json", None)
    return doc


def openapi_document(limits: ServerLimits | None = None) -> dict[str, Any]:
    """The OpenAPI document of a default server (what docs/openapi.json holds)."""
    app = create_app(Engine(store="memory://"), KeyRing(), limits)
    return app.openapi()
