"""The only orchestrator: load → batch → render → extract → merge → commit.

One ingest is one transaction: every batch of the call is extracted and merged in memory,
then the records, evidence, history, events and ledger are committed together. A failure
anywhere leaves the store as it was, so a later run picks the same events up again.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from doxa.core.confidence import decayed_model
from doxa.core.merge import MergeConfig, apply_outcome, merge
from doxa.errors import InvalidEventError, StoreConflictError, SyncInEventLoopError
from doxa.events.parse import Event, load_events, parse_event
from doxa.events.redaction import Redactor, default_redactor, redact_event
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionOutcome, ExtractionSettings, Extractor
from doxa.llm.providers import build_client, parse_provider
from doxa.llm.ratelimit import RateLimiter
from doxa.model.records import Change, UserModel
from doxa.model.schema import ModelSchema, load_schema
from doxa.prompts.render import SCHEMA_PROMPT, PromptSet
from doxa.relevance import Batch, RelevanceConfig, make_batches
from doxa.resources import data_dir
from doxa.store import Store, open_store
from doxa.usage import FlatUsage

log = logging.getLogger(__name__)
T = TypeVar("T")

Outcome = Literal["engaged", "ignored", "converted", "dismissed"]
COMMIT_ATTEMPTS = 5


class DroppedInfo(BaseModel):
    """A proposed record that failed validation after re-asking, and why."""

    batch_id: str
    kind: str
    statement: str
    reasons: list[str]


class IngestResult(FlatUsage):
    """What one ingest did and what it cost."""

    user_id: str
    model: str
    prompt_version: str
    events_received: int = 0
    events_new: int = 0
    batches: int = 0
    batches_without_signal: int = 0
    llm_calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    latency_s: float = 0.0
    changes: list[Change] = Field(default_factory=list)
    dropped: list[DroppedInfo] = Field(default_factory=list)
    commit_retries: int = 0


ProgressCallback = Callable[[str, IngestResult | BaseException], None]


class Engine:
    """doxa's front door: ingest events, record outcomes, read user models.

    `Engine(model="openai/gpt-4o-mini", store="sqlite:///doxa.db")`. Async methods are the
    core; `*_sync` wrappers run them on a private event loop for scripts and notebooks.
    """

    def __init__(
        self,
        model: str = "openai/gpt-4o-mini",
        store: str | Store = "sqlite:///doxa.db",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        prompt_dir: str | Path | None = None,
        relevance: RelevanceConfig | None = None,
        merge_config: MergeConfig | None = None,
        settings: ExtractionSettings | None = None,
        retry: RetryPolicy | None = None,
        max_context_records: int = 12,
        cache: bool = False,
        cache_store: str | Store | None = None,
        client: Any | None = None,
        clock: Callable[[], datetime] | None = None,
        redact: Redactor | None = default_redactor,
        schema: ModelSchema | str | Path | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
    ) -> None:
        self.spec = parse_provider(model, base_url)
        self.store: Store = open_store(store) if isinstance(store, str) else store
        self._cache_store: Store | None = None
        if cache:
            self._cache_store = (
                open_store(cache_store) if isinstance(cache_store, str)
                else cache_store or self.store
            )
        self.schema = load_schema(schema) if isinstance(schema, str | Path) else schema
        if prompt_dir is None and self.schema is not None:
            prompt_dir = data_dir("prompts") / SCHEMA_PROMPT
        self.prompts = PromptSet(prompt_dir, schema=self.schema)
        self.relevance = relevance or RelevanceConfig()
        self.merge_config = merge_config or MergeConfig()
        self.max_context_records = max_context_records
        self._settings = settings or ExtractionSettings()
        self._retry = retry or RetryPolicy()
        self._api_key = api_key
        self._client = client
        self._extractor: Extractor | None = None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._runner: asyncio.Runner | None = None
        self._redact = redact
        self.limiter = RateLimiter(rpm=rpm, tpm=tpm)

    @property
    def prompt_version(self) -> str:
        return self.prompts.version

    @property
    def extractor(self) -> Extractor:
        """Built on first use, so reading models needs no API key."""
        if self._extractor is None:
            client = self._client or build_client(self.spec, api_key=self._api_key)
            self._extractor = Extractor(self.spec, client, self._settings, self._retry,
                                        schema=self.schema, limiter=self.limiter)
        return self._extractor

    # -- ingest ---------------------------------------------------------------------------

    async def ingest(self, user_id: str, events: Iterable[Event | Mapping[str, Any]],
                     *, skip_invalid: bool = False) -> IngestResult:
        """Extract from the events not seen before and merge them into the user's model.

        Raises `UserErasedError`, with nothing stored, when the user is deleted while the
        ingest runs; an ingest that starts after the delete builds a new model."""
        started = time.perf_counter()
        generation = await self.store.generation(user_id)  # before anything else is read
        cache_generation = await self._cache_generation(user_id, generation)
        received, fresh, batches = await self._fresh(user_id, events, skip_invalid)
        result = IngestResult(user_id=user_id, model=self.spec.label,
                              prompt_version=self.prompt_version, events_received=received,
                              events_new=len(fresh))
        if not fresh:
            return result
        now = self._clock()
        model = await self.store.load(user_id)
        base_version = model.version
        outcomes: list[ExtractionOutcome | None] = []
        changes: list[Change] = []
        for batch in batches:
            outcome = await self._extract(batch, model, result, cache_generation)
            outcomes.append(outcome)
            model, changes = self._merge(model, changes, batch, outcome, now)
        await self._commit(user_id, model, base_version, changes, batches, outcomes, now, result,
                           generation)
        result.cost_usd = self.spec.cost(result.input_tokens, result.output_tokens)
        result.latency_s = time.perf_counter() - started
        return result

    async def _fresh(self, user_id: str, events: Iterable[Event | Mapping[str, Any]],
                     skip_invalid: bool) -> tuple[int, list[Event], list[Batch]]:
        """Events received; those not processed before, redacted; and their batches."""
        accepted = _own_events(user_id, events, skip_invalid)
        seen = await self.store.processed(user_id, (e.id for e in accepted))
        fresh = [e for e in accepted if e.id not in seen]
        if self._redact is not None:  # before any text reaches the LLM or the store
            fresh = [redact_event(e, self._redact) for e in fresh]
        return len(accepted), fresh, make_batches(user_id, fresh, self.relevance) if fresh else []

    async def pending_batches(self, user_id: str,
                              events: Iterable[Event | Mapping[str, Any]]) -> list[Batch]:
        """The batches `ingest` would extract now: unprocessed events, redacted, in order.

        For callers that extract elsewhere (a provider's batch API): cutting is prefix-stable,
        so after the first batch is merged the next call returns the rest, unchanged.
        """
        return (await self._fresh(user_id, events, False))[2]

    async def generation(self, user_id: str) -> int:
        """The user's erasure generation now: read it when work for the user begins and
        hand it to `merge_batch`, so a delete in between refuses the work."""
        return await self.store.generation(user_id)

    async def merge_batch(self, batch: Batch, outcome: ExtractionOutcome | None, *,
                          generation: int | None = None) -> IngestResult:
        """Merge one batch's extraction made elsewhere into the stored model and commit it.

        The same merge and the same all-or-nothing commit as `ingest` (a concurrent writer is
        handled by reloading and merging again); `outcome` None marks a batch without signal
        as processed. A batch whose events are all processed already changes nothing.
        `generation` is the user's erasure generation when the batch's work began (read now
        when not given): `UserErasedError` if the user was deleted since.
        """
        if generation is None:
            generation = await self.store.generation(batch.user_id)
        result = IngestResult(user_id=batch.user_id, model=self.spec.label,
                              prompt_version=self.prompt_version, batches=1,
                              events_received=len(batch.events))
        if await self.store.processed(batch.user_id, batch.events) == set(batch.events):
            return result  # merged before (a resumed run): the ledger says so
        result.events_new = len(batch.events)
        if outcome is None:
            result.batches_without_signal = 1
        else:
            _account(result, outcome)
        now = self._clock()
        model = await self.store.load(batch.user_id)
        base_version = model.version
        model, changes = self._merge(model, [], batch, outcome, now)
        await self._commit(batch.user_id, model, base_version, changes, [batch], [outcome], now,
                           result, generation)
        return result

    async def _cache_generation(self, user_id: str, generation: int) -> int:
        """The user's erasure generation in the response cache (its own store or the main)."""
        cache = self._cache_store
        if cache is None or cache is self.store:
            return generation
        return await cache.generation(user_id)

    async def _extract(self, batch: Batch, model: UserModel, result: IngestResult,
                       cache_generation: int) -> ExtractionOutcome | None:
        """One LLM call for a batch with signal (none without); the prompt sees `model`."""
        result.batches += 1
        if not batch.has_signal:
            result.batches_without_signal += 1
            return None
        messages = self.prompts.render(batch, model, max_records=self.max_context_records)
        cache = self._cache_store

        async def put(key: str, value: str) -> None:
            assert cache is not None
            await cache.cache_put(key, batch.user_id, value, generation=cache_generation)

        outcome = await self.extractor.extract(
            batch, messages, cache_get=cache.cache_get if cache else None,
            cache_put=put if cache else None,
        )
        _account(result, outcome)
        return outcome

    def _merge(self, model: UserModel, changes: list[Change], batch: Batch,
               outcome: ExtractionOutcome | None, now: datetime) -> tuple[UserModel, list[Change]]:
        if outcome is None:
            return model, changes
        merged = merge(model, outcome.proposals, batch, now=now,
                       prompt_version=self.prompt_version, config=self.merge_config)
        return merged.model, changes + merged.changes

    async def _commit(self, user_id: str, model: UserModel, base_version: int,
                      changes: list[Change], batches: Sequence[Batch],
                      outcomes: Sequence[ExtractionOutcome | None], now: datetime,
                      result: IngestResult, generation: int) -> None:
        """Commit once; if another writer got there first, reload and merge the same
        extractions again (no new LLM calls), a bounded number of times. The reloaded
        model is only ever committed under the generation the work began with: a model
        emptied by a delete is refused (`UserErasedError`), never merged into."""
        processed = [eid for b in batches for eid in b.events]
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                await self.store.commit(model, expected_version=base_version, changes=changes,
                                        events=_referenced_events(model, changes, batches),
                                        processed_ids=processed, generation=generation)
                result.changes = changes
                return
            except StoreConflictError:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
            result.commit_retries += 1
            log.info("user %s: concurrent write, reloading and merging again", user_id)
            model = await self.store.load(user_id)
            base_version, changes = model.version, []
            for batch, outcome in zip(batches, outcomes, strict=True):
                model, changes = self._merge(model, changes, batch, outcome, now)

    async def ingest_many(
        self,
        events_by_user: Mapping[str, Sequence[Event]] | Iterable[tuple[str, Sequence[Event]]],
        *, concurrency: int = 4, on_done: ProgressCallback | None = None,
        keep_results: bool = True,
    ) -> dict[str, IngestResult | BaseException]:
        """Ingest many users with at most `concurrency` at once; one user's batches stay in
        order. Users are pulled from the iterable as workers free up, so a stream of
        millions of users never sits in memory (a `UserSpool` provides one from a file).

        Each result lists every change, so keeping them all grows with the stream;
        `keep_results=False` returns only the failures and leaves the rest to `on_done`
        (how `doxa ingest` totals a file of any size in flat memory)."""
        pairs = iter(events_by_user.items() if isinstance(events_by_user, Mapping)
                     else events_by_user)
        results: dict[str, IngestResult | BaseException] = {}

        async def worker() -> None:
            for user_id, events in pairs:  # shared iterator: each user goes to one worker
                outcome: IngestResult | BaseException
                try:
                    outcome = await self.ingest(user_id, events)
                except Exception as exc:  # reported per user; other users go on
                    outcome = exc
                if keep_results or isinstance(outcome, BaseException):
                    results[user_id] = outcome
                if on_done is not None:
                    on_done(user_id, outcome)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        return results

    # -- feedback -------------------------------------------------------------------------

    async def record_outcome(
        self, user_id: str, record_id: str, outcome: Outcome, *, at: datetime | None = None,
        event_id: str | None = None, properties: Mapping[str, Any] | None = None,
    ) -> list[Change]:
        """Feed a delivery outcome back: engagement confirms a record, being ignored lowers it.

        The outcome is stored as an event (it is evidence too), so recording the same outcome
        twice changes nothing: the same `event_id`, or without one, the same user, record,
        outcome and `at`. The default id never reads the clock (a retried call a second later
        is the same outcome); count separate deliveries by giving each its own `event_id`.
        """
        when = at or self._clock()
        eid = event_id or "outcome_" + hashlib.sha256("|".join(
            (user_id, record_id, outcome, at.isoformat() if at else "")).encode()).hexdigest()[:16]
        # Validated like any event, so a bad event_id is an InvalidEventError naming the
        # field (a 422 from the server), not a pydantic error (a 500).
        event = parse_event({"id": eid, "user_id": user_id, "type": "outcome", "timestamp": when,
                             "properties": {"record_id": record_id, "outcome": outcome,
                                            **dict(properties or {})}})
        generation = await self.store.generation(user_id)
        for _ in range(COMMIT_ATTEMPTS):
            if await self.store.processed(user_id, [eid]):
                return []
            model = await self.store.load(user_id)
            result = apply_outcome(model, record_id, event, outcome, now=self._clock(),
                                   config=self.merge_config)
            try:
                await self.store.commit(result.model, expected_version=model.version,
                                        changes=result.changes, events=[event],
                                        processed_ids=[eid], generation=generation)
            except StoreConflictError:
                continue
            return result.changes
        raise StoreConflictError(user_id, -1, -1)

    # -- queries and housekeeping ---------------------------------------------------------

    async def model(self, user_id: str, *, at: datetime | None = None) -> UserModel:
        """The user's model, for delivery code: `beliefs()`, `goals()`, `explain(id)`...

        With `at`, confidences are faded to that moment (records not reinforced for a while
        count for less); without it they are as of each record's last evidence.
        """
        model = await self.store.load(user_id)
        if at is None:
            return model
        return decayed_model(model, at, self.merge_config.confidence)

    async def users(self) -> list[str]:
        return await self.store.users()

    async def delete_user(self, user_id: str) -> None:
        """Forget the user: records, evidence, history, events, ledger and cached answers."""
        await self.store.delete_user(user_id)
        if self._cache_store is not None and self._cache_store is not self.store:
            await self._cache_store.delete_user(user_id)

    async def export_user(self, user_id: str) -> dict[str, Any]:
        return await self.store.export_user(user_id)

    async def close(self) -> None:
        if self._extractor is not None and self._client is None:
            # The SDK client doxa built holds an HTTP connection pool: closing it here, on
            # the loop that used it, avoids "Event loop is closed" noise at garbage collection.
            sdk = getattr(self._extractor.client, "client", None)
            closing = getattr(sdk, "close", None)
            if closing is not None:
                done = closing()
                if inspect.isawaitable(done):
                    await done
            self._extractor = None
        await self.store.close()
        if self._cache_store is not None and self._cache_store is not self.store:
            await self._cache_store.close()

    # -- sync edge ------------------------------------------------------------------------

    def _run(self, method: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run `make()` on the engine's private loop. Inside a running loop (a notebook, an
        async app) that cannot work: say which coroutine to await instead, before any
        coroutine exists that would go un-awaited."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop here: the sync wrapper may run one
        else:
            raise SyncInEventLoopError(method)
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(_as_coro(make))

    def ingest_sync(self, user_id: str, events: Iterable[Event | Mapping[str, Any]],
                    *, skip_invalid: bool = False) -> IngestResult:
        """`ingest` for code without an event loop."""
        return self._run("ingest",
                         lambda: self.ingest(user_id, events, skip_invalid=skip_invalid))

    def model_sync(self, user_id: str, *, at: datetime | None = None) -> UserModel:
        return self._run("model", lambda: self.model(user_id, at=at))

    def record_outcome_sync(self, user_id: str, record_id: str, outcome: Outcome,
                            **kwargs: Any) -> list[Change]:
        return self._run("record_outcome",
                         lambda: self.record_outcome(user_id, record_id, outcome, **kwargs))

    def delete_user_sync(self, user_id: str) -> None:
        self._run("delete_user", lambda: self.delete_user(user_id))

    def close_sync(self) -> None:
        self._run("close", self.close)
        if self._runner is not None:
            self._runner.close()
            self._runner = None


async def _as_coro(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _own_events(user_id: str, events: Iterable[Event | Mapping[str, Any]],
                skip_invalid: bool) -> list[Event]:
    report = load_events(events, skip_invalid=skip_invalid, default_user_id=user_id)
    for index, event in enumerate(report.events):
        if event.user_id != user_id:
            raise InvalidEventError(
                f"belongs to user '{event.user_id}', not '{user_id}'", field="user_id", index=index
            )
    return report.events


def _account(result: IngestResult, outcome: ExtractionOutcome) -> None:
    result.count(outcome.usage)
    result.dropped += [
        DroppedInfo(batch_id=outcome.batch_id, kind=d.record.kind,
                    statement=d.record.statement, reasons=d.reasons)
        for d in outcome.dropped
    ]


def _referenced_events(model: UserModel, changes: Sequence[Change],
                       batches: Sequence[Batch]) -> list[Event]:
    """The batches' events that a changed record cites: stored so `explain` can show them.

    Only records this ingest changed can cite this ingest's events, so the scan is over
    the changes, not the whole model."""
    cited = {e.event_id for rid in {c.record_id for c in changes}
             if (r := model.find(rid)) is not None for e in r.evidence}
    return [ev for b in batches for eid, ev in b.events.items() if eid in cited]
