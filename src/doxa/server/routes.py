"""The `/v1` endpoints: thin over the engine's async core, every user id namespaced by tenant."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at
# definition time, and the page-size type is built per app from its limits.

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime

from doxa import __version__
from doxa.engine import Engine, IngestResult
from doxa.errors import ApiError, DoxaError
from doxa.events.fields import tenant_scoped_user_ids
from doxa.model.records import Explanation, Record, UserModel
from doxa.model.twin import Twin
from doxa.server.auth import Principal, Scope
from doxa.server.gate import PRINCIPAL
from doxa.server.problems import FieldError, doxa_error, responses
from doxa.server.reads import RenderedReads
from doxa.server.schemas import (
    ChangesResult,
    EventBatch,
    Health,
    LinkIn,
    ModelPage,
    ObservationIn,
    OutcomeIn,
    OutcomeResult,
    RecordPage,
    SortKey,
    decode_cursor,
    encode_cursor,
)
from doxa.server.settings import ServerLimits
from doxa.server.tenancy import (
    RECORD_ID_PATTERN,
    USER_ID_PATTERN,
    public_explanation,
    public_record,
    public_result,
    public_text,
    scoped,
)

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")
UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, max_length=128, examples=["u-42"],
                             description="your user id (letters, digits, `._:@+-`; no `/`)")]
RecordId = Annotated[str, Path(pattern=RECORD_ID_PATTERN, max_length=128)]
At = Annotated[AwareDatetime | None, Query(
    description="fade confidences to this moment (ISO 8601 with a time zone); without it, "
                "as of each record's last evidence")]
IfNoneMatch = Annotated[str | None, Header(
    alias="If-None-Match",
    max_length=2000, description="the `ETag` of the page you hold: if it is still the "
    "current page, the answer is 304 with no body")]
READ = responses(400, 401, 403, 404, 422)
_TAGGED = {"ETag": {"description": "the page's validator (a hash of its bytes): send it "
                    "back as `If-None-Match`", "schema": {"type": "string"}},
           "Cache-Control": {"description": "`private, no-cache`: keep the page only to "
                             "revalidate it", "schema": {"type": "string"}}}
CONDITIONAL: dict[int | str, dict[str, Any]] = {
    200: {"headers": _TAGGED},
    304: {"description": "Not Modified: `If-None-Match` names the current page; no body.",
          "headers": _TAGGED}}
WRITE = responses(400, 401, 403, 404, 409, 413, 415, 422, 503)


@dataclass
class IngestSlots:
    """At most `running` ingests at once, at most `queued` waiting; past that, 503."""

    running: int
    queued: int
    _waiting: int = 0
    _sem: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.running)

    @asynccontextmanager
    async def take(self) -> AsyncIterator[None]:
        if self._sem.locked() and self._waiting >= self.queued:
            raise ApiError(503, "busy", "too many ingests in progress; retry shortly",
                           headers={"Retry-After": "5"})
        self._waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._sem.release()


@dataclass
class ServerState:
    engine: Engine
    limits: ServerLimits
    slots: IngestSlots
    reads: RenderedReads


# The dependencies are `async def` although they never wait: FastAPI runs a plain `def`
# dependency in a worker thread, two thread hops on every read for a dict lookup.
async def state(request: Request) -> ServerState:
    found: ServerState = request.app.state.doxa
    return found


def needs(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller (authenticated by the gate), if its key has `scope`."""

    async def check(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        principal = request.scope.get("state", {}).get(PRINCIPAL)
        if not isinstance(principal, Principal):
            raise ApiError(401, "unauthorized", "no valid API key")
        if scope not in principal.scopes:
            raise ApiError(403, "forbidden", f"this API key lacks the '{scope}' scope")
        return principal

    return check


Reader = Annotated[Principal, Depends(needs("read"))]
Writer = Annotated[Principal, Depends(needs("write"))]
Deleter = Annotated[Principal, Depends(needs("delete"))]
State = Annotated[ServerState, Depends(state)]


def store_id_of(caller: Principal, user_id: str) -> str:
    """The store's id for the caller's user (the path pattern has already refused ids with
    a `/`; this is the second lock on the same door)."""
    try:
        return scoped(caller.tenant, user_id)
    except ValueError:
        raise ApiError(422, "invalid-request", "user_id: not a valid user id",
                       errors=[FieldError(field="user_id", location="path", type="pattern",
                                          message=f"must match {USER_ID_PATTERN}")]) from None


@asynccontextmanager
async def translated(store_id: str, user_id: str) -> AsyncIterator[None]:
    """doxa errors as problems that speak of the caller's user id, never the store's; inside,
    the engine accepts the store's `<tenant>/<user id>` form the server alone may write."""
    try:
        with tenant_scoped_user_ids():
            yield
    except DoxaError as exc:
        err = doxa_error(exc)
        err.detail = public_text(err.detail, store_id, user_id)
        for e in err.errors or []:
            e.message = public_text(e.message, store_id, user_id)
        raise err from None


async def existing(engine: Engine, store_id: str, user_id: str,
                   at: AwareDatetime | None = None) -> UserModel:
    """The user's model, or a 404 (the same for a user never seen and another tenant's)."""
    async with translated(store_id, user_id):
        model = await engine.model(store_id, at=at)
    if model.version == 0 and not model.records:
        raise ApiError(404, "not-found", f"no user '{user_id}'")
    return model


def paginate(records: list[Record], listing: str, key: Callable[[Record], SortKey],
             limit: int, cursor: str | None) -> tuple[list[Record], str | None]:
    ordered = sorted(records, key=key)
    if cursor is not None:
        after = decode_cursor(listing, cursor)
        if after is None:
            raise ApiError(422, "invalid-request", "cursor: not a cursor this listing gave",
                           errors=[FieldError(field="cursor", location="query", type="invalid",
                                              message="not a cursor this listing gave")])
        ordered = [r for r in ordered if key(r) > after]
    chosen = ordered[:limit]
    more = len(ordered) > limit
    return chosen, encode_cursor(listing, key(chosen[-1])) if more and chosen else None


def build_router(limits: ServerLimits) -> APIRouter:
    """The `/v1` routes; query limits in the OpenAPI document follow `limits`.

    The routes are defined in here, not at module level, because their parameter types
    carry the configured page size, which the OpenAPI document then states."""
    router = APIRouter(prefix="/v1")
    Limit = Annotated[int, Query(ge=1, le=limits.max_page,
                                 description=f"records per page (at most {limits.max_page})")]
    Cursor = Annotated[str | None, Query(max_length=200,
                                         description="`next_cursor` of the previous page")]

    @router.get("/health", tags=["service"], operation_id="health", summary="Health")
    async def health() -> Health:
        """Liveness: the server is up. Needs no key."""
        return Health(version=__version__)

    @router.post("/users/{user_id}/events", tags=["events"], operation_id="ingest_events",
                 summary="Ingest a batch of events", responses=WRITE | responses(502))
    async def ingest(user_id: UserId, batch: EventBatch, caller: Writer,
                     st: State) -> IngestResult:
        """Ingest a batch of the user's events and answer what changed in the model.

        Synchronous: the answer comes once the model is extracted, merged and stored.
        Events seen before are skipped, so a retried request changes nothing twice.
        """
        store_id = store_id_of(caller, user_id)
        _check_batch(batch, user_id, st.limits)
        raw = [e.model_dump(exclude={"user_id"}) | {"user_id": store_id} for e in batch.events]
        async with st.slots.take(), translated(store_id, user_id):
            result = await st.engine.ingest(store_id, raw)
        return public_result(result, user_id)

    @router.get("/users/{user_id}/model", tags=["model"], responses=READ | CONDITIONAL,
                operation_id="get_model", summary="Read the model", response_model=ModelPage)
    async def model(user_id: UserId, caller: Reader, st: State, limit: Limit = limits.default_page,
                    cursor: Cursor = None, at: At = None,
                    if_none_match: IfNoneMatch = None) -> Response:
        """The user's whole model, every status, ordered by record id, one page at a time.

        The answer carries an `ETag`; send it back as `If-None-Match` to get 304 and no
        body while nothing that page shows has changed."""
        store_id = store_id_of(caller, user_id)
        found = await existing(st.engine, store_id, user_id, at)

        def render() -> ModelPage:
            page, nxt = paginate(list(found.records), "model", lambda r: (0.0, r.id), limit,
                                 cursor)
            return ModelPage(user_id=user_id, records=[public_record(r, user_id) for r in page],
                             next_cursor=nxt, version=found.version,
                             readiness=found.readiness(), is_cold=found.is_cold(),
                             calibrated=found.calibrated)

        return st.reads.response(store_id, found, ("model", limit, cursor), render,
                                 keep=at is None, if_none_match=if_none_match)

    for kind in ("belief", "goal", "preference"):
        _add_kind_route(router, kind, Limit, Cursor, limits.default_page)

    @router.get("/users/{user_id}/records/{record_id}/explain", tags=["model"],
                responses=READ, operation_id="explain_record",
                summary="Explain a record")
    async def explain(user_id: UserId, record_id: RecordId, caller: Reader,
                      st: State) -> Explanation:
        """Why doxa holds a record: each piece of evidence with its event, and the history."""
        store_id = store_id_of(caller, user_id)
        found = await existing(st.engine, store_id, user_id)
        async with translated(store_id, user_id):
            return public_explanation(found.explain(record_id), user_id)

    @router.post("/users/{user_id}/outcomes", tags=["events"], responses=WRITE,
                 operation_id="record_outcome", summary="Record a delivery outcome")
    async def outcome(user_id: UserId, body: OutcomeIn, caller: Writer,
                      st: State) -> OutcomeResult:
        """Feed a delivery outcome back: engaged/converted raise the record's confidence,
        ignored/dismissed lower it. Recording the same outcome twice changes nothing."""
        store_id = store_id_of(caller, user_id)
        await existing(st.engine, store_id, user_id)
        extra = {k: v for k, v in body.properties.items() if k not in ("record_id", "outcome")}
        async with translated(store_id, user_id):
            changes = await st.engine.record_outcome(
                store_id, body.record_id, body.outcome, at=body.at, event_id=body.event_id,
                properties=extra)
        return OutcomeResult(user_id=user_id, changes=changes)

    @router.post("/users/{user_id}/observations", tags=["why"], responses=WRITE,
                 operation_id="observe", summary="Record an observation")
    async def observe(user_id: UserId, body: ObservationIn, caller: Writer,
                      st: State) -> ChangesResult:
        """Record what you observed about the user without an LLM (by hand or by a rule):
        merged as an extracted record is (reinforce, contradict, supersede), its source
        kept for explain. The same `id` twice changes nothing."""
        store_id = store_id_of(caller, user_id)
        async with translated(store_id, user_id):
            changes = await st.engine.observe(store_id, **body.model_dump())
        return ChangesResult(user_id=user_id, changes=changes)

    @router.post("/users/{user_id}/links", tags=["why"], responses=WRITE,
                 operation_id="link_records", summary="Record a causal link")
    async def link(user_id: UserId, body: LinkIn, caller: Writer, st: State) -> ChangesResult:
        """Record why the user pursues a goal: `because` a motivation, `constrained_by` a
        constraint, `blocked_by` a belief, `in_order_to` another goal. A link the model
        cannot hold (an unknown record, the wrong kinds) is a 422 naming the field."""
        store_id = store_id_of(caller, user_id)
        await existing(st.engine, store_id, user_id)
        async with translated(store_id, user_id):
            changes = await st.engine.link(store_id, **body.model_dump())
        return ChangesResult(user_id=user_id, changes=changes)

    @router.get("/users/{user_id}/twin", tags=["why"], responses=READ, operation_id="get_twin",
                summary="Read the digital twin")
    async def twin(user_id: UserId, caller: Reader, st: State,
                   recent_days: Annotated[float, Query(ge=0.0, le=3650.0)] = 30.0,
                   at: At = None) -> Twin:
        """The user's active goals, each with its motivations, constraints and blocking
        beliefs (confidences and evidence), and what changed recently; `prompt` is the
        compact rendering for a delivery prompt (`as_prompt()`)."""
        found = await existing(st.engine, store_id_of(caller, user_id), user_id, at)
        view = found.twin(recent_days=recent_days)
        return view.model_copy(update={"user_id": user_id})

    @router.delete("/users/{user_id}", tags=["users"], status_code=204,
                   responses=responses(400, 401, 403, 422, 503), operation_id="delete_user",
                   summary="Erase a user")
    async def delete(user_id: UserId, caller: Deleter, st: State) -> Response:
        """Erase everything held about the user. Idempotent: 204 whether or not it existed."""
        store_id = store_id_of(caller, user_id)
        async with translated(store_id, user_id):
            await st.engine.delete_user(store_id)
        return Response(status_code=204)

    return router


def _add_kind_route(router: APIRouter, kind: str, limit_type: Any, cursor_type: Any,
                    default_page: int) -> None:
    plural = f"{kind}s"
    # UserModel.beliefs, .goals or .preferences
    select: Callable[[UserModel, str | None, float, bool], list[Record]] = getattr(
        UserModel, plural)

    async def listing(user_id: UserId, caller: Reader, st: State,
                      context: Annotated[str | None, Query(max_length=100)] = None,
                      min_confidence: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
                      include_inactive: bool = False, limit: limit_type = default_page,
                      cursor: cursor_type = None, at: At = None,
                      if_none_match: IfNoneMatch = None) -> Response:
        store_id = store_id_of(caller, user_id)
        found = await existing(st.engine, store_id, user_id, at)

        def render() -> RecordPage:
            chosen = select(found, context, min_confidence, include_inactive)
            page, nxt = paginate(chosen, plural, lambda r: (-r.confidence, r.id), limit, cursor)
            return RecordPage(user_id=user_id, records=[public_record(r, user_id) for r in page],
                              next_cursor=nxt, calibrated=found.calibrated)

        asked = (plural, context, min_confidence, include_inactive, limit, cursor)
        return st.reads.response(store_id, found, asked, render, keep=at is None,
                                 if_none_match=if_none_match)

    listing.__doc__ = (f"The user's {plural}, surest first: filter by `context` and "
                       f"`min_confidence` (0..1); `include_inactive` adds ended ones. "
                       "`If-None-Match` with the answer's `ETag` gets 304 while the page "
                       "is unchanged.")
    router.add_api_route(f"/users/{{user_id}}/{plural}", listing, methods=["GET"],
                         response_model=RecordPage, tags=["model"],
                         responses=READ | CONDITIONAL, name=plural,
                         operation_id=f"list_{plural}", summary=f"List {plural}")


def _check_batch(batch: EventBatch, user_id: str, limits: ServerLimits) -> None:
    if len(batch.events) > limits.max_events:
        message = f"{len(batch.events)} events; at most {limits.max_events} per request"
        raise ApiError(422, "invalid-request", f"events: {message}",
                       errors=[FieldError(field="events", location="body", message=message,
                                          type="too_long")])
    wrong = [FieldError(field=f"events[{i}].user_id", location="body", type="user_mismatch",
                        message=f"is '{e.user_id}', not the path's '{user_id}'")
             for i, e in enumerate(batch.events) if e.user_id not in (None, user_id)]
    first: dict[str, int] = {}
    for i, e in enumerate(batch.events):
        j = first.setdefault(e.id, i)
        if j != i and (batch.events[j].model_dump(exclude={"user_id"})
                       != e.model_dump(exclude={"user_id"})):
            wrong.append(FieldError(field=f"events[{i}].id", location="body", type="duplicate",
                                    message=f"'{e.id}' is also events[{j}]'s id, with other "
                                            "content"))
    if wrong:
        summary = "; ".join(f"{e.field}: {e.message}" for e in wrong[:5])
        raise ApiError(422, "invalid-request", f"nothing was ingested: {summary}", errors=wrong)

