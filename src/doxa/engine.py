"""The only orchestrator: load → batch → render → extract → merge → commit.

One ingest is one transaction: every batch of the call is extracted and merged in memory,
then the records, evidence, history, events and ledger are committed together. A failure
anywhere leaves the store as it was, so a later run picks the same events up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypedDict, TypeVar, Unpack

from pydantic import BaseModel, Field

from doxa.calibration.apply import make_calibrator
from doxa.calibration.kept import CalibratedViews
from doxa.calibration.outcomes import OutcomeCount, outcome_count
from doxa.calibration.profile import CalibrationProfile
from doxa.core.confidence import decayed_model
from doxa.core.flush import FlushPolicy, FlushReason
from doxa.core.groups import GroupBy
from doxa.core.leverage import LeverageReport, leverage
from doxa.core.links import rebased
from doxa.core.merge import MergeConfig, MergeResult, apply_outcome, merge
from doxa.core.observe import (
    LinkObservation,
    Observation,
    apply_link,
    apply_observation,
    default_id,
    observation_event,
    validated,
)
from doxa.core.profile import (
    IDENTIFY,
    PROFILE_TYPES,
    RECORD_OUTCOME,
    USER_OUTCOME,
    UserProfile,
    is_profile_event,
)
from doxa.core.segments import segment_of
from doxa.core.similarity import Similarity
from doxa.errors import InvalidEventError, StoreConflictError, SyncInEventLoopError
from doxa.events.fields import tenant_scoped_user_ids
from doxa.events.parse import Event, load_events, parse_event
from doxa.events.redaction import Redactor, default_redactor, redact_event
from doxa.llm.batch_api import BatchAPI
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionOutcome, ExtractionSettings, Extractor
from doxa.llm.providers import build_client, parse_provider
from doxa.llm.ratelimit import RateLimiter
from doxa.llm.schema import DroppedRecord
from doxa.llm.short_ids import ShortIds
from doxa.llm.why import WhyAsker, WhyOutcome
from doxa.model.records import Change, Relation, UserModel, cited_event_ids
from doxa.model.schema import ModelSchema, load_schema
from doxa.prompts.render import SCHEMA_PROMPT, Messages, PromptSet
from doxa.relevance import Batch, RelevanceConfig, make_batches, relevant_text_tokens
from doxa.resources import data_dir
from doxa.store import Store, open_store
from doxa.store.base import BufferClaim
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


class DroppedLinkInfo(BaseModel):
    """A causal link the why pass proposed that failed validation, and why; never stored."""

    batch_id: str
    link: str
    """The link as the model wrote it: `[goal] statement relation [target] statement`."""
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
    reasks: int = 0
    """Calls after each calling batch's first: re-asks of invalid answers or records."""
    repairs: int = 0
    """Evidence mended without a re-ask (a quote's exact span taken, a citation fixed)."""
    reask_input_tokens: int = 0
    """Of input_tokens, those the re-asks sent."""
    reask_output_tokens: int = 0
    """Of output_tokens, those the re-asks answered."""
    why_calls: int = 0
    """Of llm_calls, those the why pass made (`why=True`: one per batch that yielded a goal,
    a re-ask of an answer that did not parse included)."""
    why_input_tokens: int = 0
    """Of input_tokens, those the why pass sent."""
    why_output_tokens: int = 0
    """Of output_tokens, those the why pass answered."""
    cached_calls: int = 0
    """The calls the answers taken from the cache (`cache_hits`) took when first asked;
    not made again, and not in llm_calls."""
    cached_input_tokens: int = 0
    """The input tokens those cached answers cost when first asked (not in input_tokens)."""
    cached_output_tokens: int = 0
    """The output tokens those cached answers cost when first asked (not in output_tokens)."""
    latency_s: float = 0.0
    changes: list[Change] = Field(default_factory=list)
    dropped: list[DroppedInfo] = Field(default_factory=list)
    dropped_links: list[DroppedLinkInfo] = Field(default_factory=list)
    """Causal links the why pass proposed and validation refused, with the reasons."""
    commit_retries: int = 0


ProgressCallback = Callable[[str, IngestResult | BaseException], None]


class FlushReport(FlatUsage):
    """What one flush of the buffers did: whose events were extracted, why, and the cost."""

    users_due: int = 0
    """Users whose buffer the policy (or `force`) said to flush in this pass."""
    users_flushed: int = 0
    """Of those, users whose buffered events were extracted and committed."""
    users_waiting: int = 0
    """Users with buffered events left after this pass (not yet due, or held elsewhere)."""
    events: int = 0
    """Buffered events this pass took out of the buffers (each now in the ledger)."""
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    reasons: dict[str, FlushReason] = Field(default_factory=dict)
    """Why each due user was flushed."""
    errors: dict[str, str] = Field(default_factory=dict)
    """Users whose flush failed; their events stay buffered for a later pass."""


@dataclass(frozen=True)
class EngineConfig:
    """Every setting of an `Engine`, in one value that can be built once, kept and shipped
    (a Ray task gets a copy); `Engine(model, store, config=...)`. The engine's collaborators
    (the store, an SDK client, a clock) are not settings and stay `Engine` arguments."""

    base_url: str | None = None
    """The provider's endpoint, for OpenAI-compatible servers (None: the provider's own)."""
    api_key: str | None = field(default=None, repr=False)
    """None: read from the provider's environment variable when the first call is made."""
    prompt_dir: str | Path | None = None
    """A folder of prompt templates (None: the shipped prompt, or its schema variant)."""
    schema: ModelSchema | str | Path | None = None
    """A model schema, or the file holding one: extraction is then schema-shaped."""
    relevance: RelevanceConfig | None = None
    """Which events reach the LLM and how batches are cut (None: `RelevanceConfig()`)."""
    merge_config: MergeConfig | None = None
    """How proposals merge into the model (None: `MergeConfig()`)."""
    settings: ExtractionSettings | None = None
    """How an extraction is asked for (None: `ExtractionSettings()`)."""
    retry: RetryPolicy | None = None
    """How transient provider errors are retried (None: `RetryPolicy()`)."""
    max_context_records: int = 12
    """Known records a prompt shows, so the model can update rather than repeat them."""
    cache: bool = False
    """Keep LLM answers, so the same prompt is answered from the store (evals, re-runs)."""
    cache_store: str | Store | None = None
    """Where answers are cached when `cache` is on (None: the engine's own store)."""
    redact: Redactor | None = default_redactor
    """Applied to event text before it reaches the LLM or the store (None: kept as is)."""
    rpm: float | None = None
    """Requests per minute to stay under (None: no client-side limit)."""
    tpm: float | None = None
    """Tokens per minute to stay under (None: no client-side limit)."""
    flush: FlushPolicy | None = None
    """When a buffered user's events are worth a call (None: `FlushPolicy()`)."""
    why: bool = False
    """Ask, after each batch whose extraction proposed a goal, one more short call for the
    causal links between its records and the known ones (`doxa.llm.why`); off, extraction
    and its cost are as they were. `ingest(..., why=...)` overrides it per call."""
    calibration: CalibrationProfile | str | Path | Literal[False] | None = None
    """A calibration profile (or its file) applied to every record, or a folder searched
    for the model's profiles by prompt version (None: `DOXA_CALIBRATION_DIR`, then the
    profiles shipped with doxa; False: none). Without a matching profile,
    `model.calibrated` is False."""


class EngineOptions(TypedDict, total=False):
    """`EngineConfig`'s fields as `Engine` keyword arguments (typed for callers); a test
    keeps the two in step."""

    base_url: str | None
    api_key: str | None
    prompt_dir: str | Path | None
    schema: ModelSchema | str | Path | None
    relevance: RelevanceConfig | None
    merge_config: MergeConfig | None
    settings: ExtractionSettings | None
    retry: RetryPolicy | None
    max_context_records: int
    cache: bool
    cache_store: str | Store | None
    redact: Redactor | None
    rpm: float | None
    tpm: float | None
    flush: FlushPolicy | None
    why: bool
    calibration: CalibrationProfile | str | Path | Literal[False] | None


@dataclass(frozen=True)
class ExtractionRequest:
    """One batch's request to the LLM, rendered against the model it will extend (online,
    the model as merged so far in this ingest; for a batch API, the model in the store)."""

    batch: Batch
    messages: Messages

    @property
    def known_record_ids(self) -> frozenset[str]:
        """The records the prompt showed: the only ones an answer may update."""
        return self.messages.known_record_ids


@dataclass(frozen=True)
class PreparedRequest:
    """A request for a transport that answers elsewhere (a provider's batch API): `body` is
    the JSON the online path sends for the same batch and model, to the byte."""

    batch: Batch
    known_record_ids: frozenset[str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Prepared:
    """A user's next step for such a transport (see `Engine.prepare`)."""

    without_signal: tuple[Batch, ...]
    """Pending batches before the request that need no LLM: `apply` each, with no answer,
    before the request's answer (the ledger stays in event order)."""
    request: PreparedRequest | None
    """The first pending batch with signal; None when there is none."""


class Engine:
    """doxa's front door: ingest events, record outcomes, read user models.

    `async with Engine(model="openai/gpt-4o-mini", store="sqlite:///doxa.db") as engine:`
    closes the store and the HTTP client on the way out (`close()` does it by hand).
    Settings come as an `EngineConfig` or as its fields, by keyword (a keyword given with
    `config` replaces that field). Async methods are the core; `*_sync` wrappers run them
    on a private event loop for scripts and notebooks (`with Engine(...)` closes them).
    """

    def __init__(
        self,
        model: str = "openai/gpt-4o-mini",
        store: str | Store = "sqlite:///doxa.db",
        *,
        config: EngineConfig | None = None,
        client: Any | None = None,
        clock: Callable[[], datetime] | None = None,
        **options: Unpack[EngineOptions],
    ) -> None:
        self.config = replace(config or EngineConfig(), **options)
        config = self.config
        self.spec = parse_provider(model, config.base_url)
        self.store: Store = open_store(store) if isinstance(store, str) else store
        self._cache_store: Store | None = None
        if config.cache:
            self._cache_store = (
                open_store(config.cache_store) if isinstance(config.cache_store, str)
                else config.cache_store or self.store
            )
        self.schema = (load_schema(config.schema) if isinstance(config.schema, str | Path)
                       else config.schema)
        prompt_dir = config.prompt_dir
        if prompt_dir is None and self.schema is not None:
            prompt_dir = data_dir("prompts") / SCHEMA_PROMPT
        self.prompts = PromptSet(prompt_dir, schema=self.schema)
        self.relevance = config.relevance or RelevanceConfig()
        self.merge_config = config.merge_config or MergeConfig()
        self.flush_policy = config.flush or FlushPolicy()
        self.max_context_records = config.max_context_records
        self._settings = config.settings or ExtractionSettings()
        self._retry = config.retry or RetryPolicy()
        self._client = client
        self._extractor: Extractor | None = None
        self._why_asker: WhyAsker | None = None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._runner: asyncio.Runner | None = None
        self.limiter = RateLimiter(rpm=config.rpm, tpm=config.tpm)
        self.calibrator = make_calibrator(config.calibration, self.spec.label, self.relevance)
        self._calibrated = CalibratedViews()

    @property
    def prompt_version(self) -> str:
        return self.prompts.version

    @property
    def why_asker(self) -> WhyAsker:
        """The why pass, over the extractor's client, settings and rate limiter."""
        if self._why_asker is None:
            self._why_asker = WhyAsker(self.extractor.llm, self._settings, schema=self.schema)
        return self._why_asker

    @property
    def extractor(self) -> Extractor:
        """Built on first use, so reading models needs no API key."""
        if self._extractor is None:
            client = self._client or build_client(self.spec, api_key=self.config.api_key)
            self._extractor = Extractor(self.spec, client, self._settings, self._retry,
                                        schema=self.schema, limiter=self.limiter)
        return self._extractor

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close_sync()

    # -- ingest ---------------------------------------------------------------------------

    async def ingest(self, user_id: str, events: Iterable[Event | Mapping[str, Any]],
                     *, skip_invalid: bool = False, why: bool | None = None) -> IngestResult:
        """Extract from the events not seen before and merge them into the user's model.

        `why` asks the why pass for causal links after each batch that yields a goal (None:
        the engine's `why` setting). Raises `UserErasedError`, with nothing stored, when the
        user is deleted while the ingest runs; an ingest that starts after the delete builds
        a new model."""
        return await self._ingest(user_id, events, skip_invalid, why=why)

    async def _ingest(self, user_id: str, events: Iterable[Event | Mapping[str, Any]],
                      skip_invalid: bool, claim: BufferClaim | None = None, *,
                      why: bool | None = None) -> IngestResult:
        """`ingest`; with a buffer `claim`, its rows leave the buffer in the same commit."""
        why = self.config.why if why is None else why
        started = time.perf_counter()
        generation = await self.store.generation(user_id)  # before anything else is read
        cache_generation = await self._cache_generation(user_id, generation)
        received, fresh, batches = await self._fresh(user_id, events, skip_invalid)
        result = IngestResult(user_id=user_id, model=self.spec.label,
                              prompt_version=self.prompt_version, events_received=received,
                              events_new=len(fresh))
        if not fresh:
            if claim is not None:  # all processed before (ingested directly): just let go
                await self.store.buffer_consume(claim)
            return result
        now = self._clock()
        draft = _Draft.of(await self.store.load(user_id))
        outcomes: list[ExtractionOutcome | None] = []
        for batch in batches:
            outcome = await self._extract(batch, draft.model, result, cache_generation,
                                          why=why)
            outcomes.append(outcome)
            draft = self._merge(draft, batch, outcome, now)
        await self._commit(user_id, draft, batches, outcomes, now, result, generation, claim)
        result.cost_usd = self.spec.cost(result.input_tokens, result.output_tokens)
        result.latency_s = time.perf_counter() - started
        return result

    async def _fresh(self, user_id: str, events: Iterable[Event | Mapping[str, Any]],
                     skip_invalid: bool) -> tuple[int, list[Event], list[Batch]]:
        """Events received; those not processed before, redacted; and their batches."""
        accepted = _own_events(user_id, events, skip_invalid)
        seen = await self.store.processed(user_id, (e.id for e in accepted))
        fresh = [e for e in accepted if e.id not in seen]
        if self.config.redact is not None:  # before any text reaches the LLM or the store
            fresh = [redact_event(e, self.config.redact) for e in fresh]
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
        hand it to `apply` (or `merge_batch`), so a delete in between refuses the work."""
        return await self.store.generation(user_id)

    # -- transports that answer elsewhere: prepare, then apply ------------------------------

    async def prepare(self, user_id: str,
                      events: Iterable[Event | Mapping[str, Any]]) -> Prepared:
        """The user's next request for a transport that answers elsewhere (a provider's
        batch API), made by the same steps as `ingest`'s.

        A user's batch k is prompted with the model after batch k-1, so only the first
        pending batch with signal can be asked now: it is rendered against the model in the
        store, and its body is what the online path sends for that batch and model. The
        pending batches before it need no LLM; they come back to be applied first.
        """
        batches = await self.pending_batches(user_id, events)
        leading = tuple(takewhile(lambda b: not b.has_signal, batches))
        if len(leading) == len(batches):
            return Prepared(leading, None)
        batch = batches[len(leading)]
        shown = ShortIds.of(batch)
        asked = self._request(shown.batch, await self.store.load(user_id))
        return Prepared(leading, PreparedRequest(
            batch, asked.known_record_ids,
            self.extractor.request_body(shown.batch, asked.messages)))

    async def apply(self, batch: Batch, answer: Any | None, *,
                    known_record_ids: Iterable[str] = (),
                    generation: int | None = None) -> IngestResult:
        """Merge a prepared batch's answer into the stored model and commit it.

        `answer` is the provider's own response object (`ChatCompletion` or Anthropic
        `Message`), None for a batch without signal. It is validated exactly as an online
        answer, against the records its prompt showed (`known_record_ids`); only the re-ask
        is impossible, so an invalid record is dropped and counted, and an answer that does
        not parse raises `ExtractionValidationError` with nothing stored. Then the merge and
        commit of `merge_batch`.
        """
        shown = ShortIds.of(batch)
        outcome = None if answer is None else shown.restore(self.extractor.parse_answer(
            shown.batch, frozenset(known_record_ids), answer))
        return await self.merge_batch(batch, outcome, generation=generation)

    def batch_api(self) -> BatchAPI:
        """The provider's batch API over this engine's own SDK client and credentials."""
        return self.spec.batch_api(self.extractor.client.client)

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
        draft = self._merge(_Draft.of(await self.store.load(batch.user_id)), batch, outcome, now)
        await self._commit(batch.user_id, draft, [batch], [outcome], now, result, generation)
        return result

    async def _cache_generation(self, user_id: str, generation: int) -> int:
        """The user's erasure generation in the response cache (its own store or the main)."""
        cache = self._cache_store
        if cache is None or cache is self.store:
            return generation
        return await cache.generation(user_id)

    def _request(self, batch: Batch, model: UserModel) -> ExtractionRequest:
        """The one place a batch's prompt is rendered, for every transport."""
        return ExtractionRequest(batch, self.prompts.render(
            batch, model, max_records=self.max_context_records))

    async def _extract(self, batch: Batch, model: UserModel, result: IngestResult,
                       cache_generation: int, *, why: bool = False) -> ExtractionOutcome | None:
        """One LLM call for a batch with signal (none without); the prompt sees `model`.
        With `why`, the why pass follows when the extraction proposed a goal."""
        result.batches += 1
        if not batch.has_signal:
            result.batches_without_signal += 1
            return None
        shown = ShortIds.of(batch)
        request = self._request(shown.batch, model)
        cache = self._cache_store

        async def put(key: str, value: str) -> None:
            assert cache is not None
            await cache.cache_put(key, batch.user_id, value, generation=cache_generation)

        outcome = await self.extractor.extract(
            shown.batch, request.messages, cache_get=cache.cache_get if cache else None,
            cache_put=put if cache else None,
        )
        restored = shown.restore(outcome)
        _account(result, restored)
        asked = self.why_asker.messages(shown.batch, outcome.proposals, model,
                                        request.known_record_ids) if why else None
        if asked is None:
            return restored
        found = await self.why_asker.ask(shown.batch, outcome.proposals, asked,
                                         cache_get=cache.cache_get if cache else None,
                                         cache_put=put if cache else None)
        _account_why(result, shown.restore_why(found))
        return shown.restore(replace(outcome, why=found))

    def _merge(self, draft: _Draft, batch: Batch, outcome: ExtractionOutcome | None,
               now: datetime) -> _Draft:
        if outcome is None:
            return draft
        merged = merge(draft.model, outcome.proposals, batch, now=now,
                       prompt_version=self.prompt_version, config=self.merge_config,
                       reasked=outcome.reasked)
        changes = draft.changes + merged.changes
        found = outcome.why
        if found is not None and (found.records or found.links):
            # The why pass's records and links, under its own prompt version; its links
            # name the extraction's proposals by where they landed.
            merged = merge(merged.model, found.records, batch, now=now,
                           prompt_version=found.prompt_version, config=self.merge_config,
                           links=rebased(found.links, merged.landed, len(outcome.proposals)))
            changes += merged.changes
        return _Draft(draft.base_version, merged.model, changes)

    async def _commit(self, user_id: str, draft: _Draft, batches: Sequence[Batch],
                      outcomes: Sequence[ExtractionOutcome | None], now: datetime,
                      result: IngestResult, generation: int,
                      claim: BufferClaim | None = None) -> None:
        """Commit the merged draft; if another writer got there first, reload and merge the
        same extractions again (no new LLM calls). The reloaded model is only ever committed
        under the generation the work began with: a model emptied by a delete is refused
        (`UserErasedError`), never merged into."""
        processed = [eid for b in batches for eid in b.events]

        async def attempt(retry: int) -> None:
            nonlocal draft
            if retry:
                result.commit_retries += 1
                draft = _Draft.of(await self.store.load(user_id))
                for batch, outcome in zip(batches, outcomes, strict=True):
                    draft = self._merge(draft, batch, outcome, now)
            await self.store.commit(draft.model, expected_version=draft.base_version,
                                    changes=draft.changes,
                                    events=_cited_events(draft, batches),
                                    processed_ids=processed, generation=generation,
                                    claim=claim)
            result.changes = draft.changes

        await self._retrying_conflicts(user_id, attempt)

    async def _retrying_conflicts(self, user_id: str,
                                  attempt: Callable[[int], Awaitable[T]]) -> T:
        """Run `attempt(retry)` (which reads the stored model and commits what it made of it)
        until no other writer commits first, at most COMMIT_ATTEMPTS times; the last
        `StoreConflictError`, with the versions it met, goes to the caller."""
        for retry in range(COMMIT_ATTEMPTS - 1):
            try:
                return await attempt(retry)
            except StoreConflictError:
                log.info("user %s: concurrent write, reloading and merging again", user_id)
        return await attempt(COMMIT_ATTEMPTS - 1)

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
        return await self._ingest_each(pairs, self.ingest, concurrency=concurrency,
                                       on_done=on_done, keep_results=keep_results)

    async def _ingest_each(
        self, pairs: Iterator[tuple[str, T]],
        ingest: Callable[[str, T], Awaitable[IngestResult]], *, concurrency: int,
        on_done: ProgressCallback | None, keep_results: bool,
    ) -> dict[str, IngestResult | BaseException]:
        """`ingest_many`'s workers, over any (user, work) pairs and a way to ingest one."""
        results: dict[str, IngestResult | BaseException] = {}

        async def worker() -> None:
            for user_id, work in pairs:  # shared iterator: each user goes to one worker
                outcome: IngestResult | BaseException
                try:
                    outcome = await ingest(user_id, work)
                except Exception as exc:  # reported per user; other users go on
                    outcome = exc
                if keep_results or isinstance(outcome, BaseException):
                    results[user_id] = outcome
                if on_done is not None:
                    on_done(user_id, outcome)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        return results

    # -- events one at a time: buffer now, extract when worth a call ----------------------

    async def add(self, user_id: str, event: Event | Mapping[str, Any]) -> None:
        """Append one event to the user's durable buffer; a worker (`run_worker`, `doxa
        worker`) extracts it with the user's other buffered events when the flush policy
        says they are worth a call. Adding an event id already buffered or processed for
        the user changes nothing. The event is validated (and redacted) now, so a bad one
        is refused here, naming the field, not when a worker meets it."""
        await self._buffer(_own_events(user_id, [event], skip_invalid=False))

    async def add_many(self, events: Sequence[Event | Mapping[str, Any]]) -> int:
        """Append events of any users (each names its `user_id`) to their buffers in one
        write; returns how many were new (not already buffered or processed). Invalid
        events refuse the whole call (`InvalidEventsError`), with nothing buffered."""
        return await self._buffer(load_events(events).events)

    async def _buffer(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        if self.config.redact is not None:  # the buffer is a store too: no raw text in it
            events = [redact_event(e, self.config.redact) for e in events]
        return await self.store.buffer_add(
            [(e, relevant_text_tokens(e, self.relevance)) for e in events], now=self._clock())

    async def flush(self, policy: FlushPolicy | None = None, *, force: bool = False,
                    concurrency: int = 4, lease_s: float = 60.0, max_users: int = 64,
                    on_done: ProgressCallback | None = None) -> FlushReport:
        """One pass over the buffers: extract the events of every user that is due under
        `policy` (the engine's, by default; `force`: every user with buffered events), at
        most `max_users` of them, oldest buffer first, through the same workers as
        `ingest_many` and under the engine's rate limiter.

        Each user's buffered rows are claimed for `lease_s` seconds (renewed while the
        pass runs) and leave the buffer in the commit that merges their extraction. A
        worker that dies mid-flush leaves them buffered; once its lease ends, the next pass
        takes them. A failed user keeps its events buffered until its lease ends, which
        spaces out the retries."""
        policy = policy or self.flush_policy
        now = self._clock()
        summaries = await self.store.buffer_summaries(
            now=now, high_signal_types=policy.high_signal_types)
        due: dict[str, FlushReason] = {}
        for summary in sorted(summaries, key=lambda s: (s.oldest or now, s.user_id)):
            reason = ("forced" if force and summary.events else None) or policy.due(summary,
                                                                                    now)
            if reason is not None and len(due) < max_users:
                due[summary.user_id] = reason
        report = FlushReport(users_due=len(due), reasons=due)
        token = uuid.uuid4().hex
        until = now + timedelta(seconds=lease_s)
        claims = [c for u in due
                  if (c := await self.store.buffer_claim(u, token, now=now, until=until)).events]
        renewing = asyncio.create_task(self._renew_leases(token, lease_s))
        try:
            results = await self._ingest_each(
                ((c.user_id, c) for c in claims),
                self._ingest_claim,
                concurrency=concurrency, on_done=on_done, keep_results=True)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        for claim in claims:
            outcome = results[claim.user_id]
            if isinstance(outcome, BaseException):
                log.warning("flush of user %s failed: %s", claim.user_id, outcome)
                report.errors[claim.user_id] = str(outcome) or type(outcome).__name__
                continue
            report.users_flushed += 1
            report.events += len(claim.events)
            report.count(outcome.usage)
        left = await self.store.buffer_summaries(now=self._clock(),
                                                 high_signal_types=policy.high_signal_types)
        report.users_waiting = len(left)
        return report

    async def _ingest_claim(self, user_id: str, claim: BufferClaim) -> IngestResult:
        # Buffered events were validated when added, some by the server under its tenant
        # scope (`<tenant>/<user>` ids): their ids are taken as they were accepted.
        with tenant_scoped_user_ids():
            return await self._ingest(user_id, claim.events, False, claim)

    async def _renew_leases(self, token: str, lease_s: float) -> None:
        """Keep a pass's claims alive while it runs: a slow provider must not let another
        worker take events this one is still extracting."""
        while True:
            await asyncio.sleep(lease_s / 3)
            await self.store.buffer_renew(token, until=self._clock() + timedelta(
                seconds=lease_s))

    async def run_worker(self, policy: FlushPolicy | None = None, *, poll_s: float = 1.0,
                         concurrency: int = 4, lease_s: float = 60.0,
                         stop: asyncio.Event | None = None, drain: bool = False,
                         on_flush: Callable[[FlushReport], None] | None = None) -> None:
        """Flush due buffers (`flush`) every `poll_s` seconds until `stop` is set; a pass
        that left due users behind (more than `flush` takes at once) is followed at once.

        With `drain`, every buffered event is flushed whatever the policy, and the worker
        returns when the buffers are empty, or when a pass flushed nothing and failed
        (`on_flush` has seen the errors). Events held by another worker's live lease are
        waited for."""
        stop = stop or asyncio.Event()
        max_users = 64
        while not stop.is_set():
            report = await self.flush(policy, force=drain, concurrency=concurrency,
                                      lease_s=lease_s, max_users=max_users)
            if on_flush is not None and report.users_due:
                on_flush(report)
            if drain and (report.users_waiting == 0
                          or (report.errors and not report.users_flushed)):
                return
            if report.users_due >= max_users:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

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

        async def attempt(_retry: int) -> list[Change]:
            if await self.store.processed(user_id, [eid]):
                return []
            model = await self.store.load(user_id)
            result = apply_outcome(model, record_id, event, outcome, now=self._clock(),
                                   config=self.merge_config)
            await self.store.commit(result.model, expected_version=model.version,
                                    changes=result.changes, events=[event],
                                    processed_ids=[eid], generation=generation,
                                    outcomes=[self._outcome_count(model, record_id, outcome,
                                                                  when)])
            return result.changes

        return await self._retrying_conflicts(user_id, attempt)

    # -- observations: records and links given without an LLM ------------------------------

    async def observe(
        self, user_id: str, kind: str, statement: str, *, evidence: Sequence[str] = (),
        confidence: float | None = None, context: str | None = None, source: str = "manual",
        id: str | None = None, at: datetime | None = None,
        relation: Literal["new", "reinforces", "refines", "contradicts"] = "new",
        related_record_id: str | None = None, dimension: str | None = None,
        value: str | None = None, status: Literal["active", "achieved", "abandoned"] = "active",
    ) -> list[Change]:
        """Record what the caller observed about the user, merged as an extracted record
        is (reinforce, contradict, supersede; history, ledger). `evidence` names events
        doxa holds or the caller's own ids; `confidence` is the caller's prior for that
        evidence; `source` is "manual" or "rule:<name>" and `explain` shows it. The same
        `id` twice changes nothing; without one the id derives from what is observed."""
        data = {"id": id or default_id(user_id, kind, statement, tuple(evidence), source,
                                       context, relation, related_record_id, dimension, value),
                "kind": kind, "statement": statement, "evidence": tuple(evidence),
                "confidence": confidence, "context": context, "source": source,
                "at": at or self._clock(), "relation": relation,
                "related_record_id": related_record_id, "dimension": dimension,
                "value": value, "status": status}
        obs: Observation = validated(Observation, data)
        return await self._observed(user_id, obs, lambda model, known, now: apply_observation(
            model, obs, known, now=now, config=self.merge_config))

    async def link(
        self, user_id: str, goal_id: str, relation: Relation, target_id: str, *,
        evidence: Sequence[str] = (), confidence: float | None = None,
        source: str = "manual", id: str | None = None, at: datetime | None = None,
    ) -> list[Change]:
        """Record a causal link the caller observed: the goal is `because` of a motivation,
        `constrained_by` a constraint, `blocked_by` a belief or `in_order_to` another goal.
        Idempotent by `id` as `observe` is; a link the model cannot hold (an unknown record,
        the wrong kinds) is refused naming the field."""
        data = {"id": id or default_id(user_id, goal_id, relation, target_id, tuple(evidence),
                                       source),
                "goal_id": goal_id, "relation": relation, "target_id": target_id,
                "evidence": tuple(evidence), "confidence": confidence, "source": source,
                "at": at or self._clock()}
        obs: LinkObservation = validated(LinkObservation, data)
        return await self._observed(user_id, obs, lambda model, known, now: apply_link(
            model, obs, known, now=now, config=self.merge_config))

    async def _observed(self, user_id: str, obs: Observation | LinkObservation,
                        apply: Callable[[UserModel, dict[str, Event], datetime], MergeResult],
                        ) -> list[Change]:
        """Commit an observation once: its event and ledger entry with what it changed."""
        return await self._keep_event(user_id, observation_event(user_id, obs), obs.evidence,
                                      apply)

    async def _keep_event(
        self, user_id: str, event: Event, cited: Sequence[str] = (),
        apply: Callable[[UserModel, dict[str, Event], datetime], MergeResult] | None = None,
    ) -> list[Change]:
        """Store one event once (its id in the ledger) with what `apply` makes of the model
        given the stored events it `cited` (nothing: the model is unchanged)."""
        if self.config.redact is not None:
            event = redact_event(event, self.config.redact)
        generation = await self.store.generation(user_id)

        async def attempt(_retry: int) -> list[Change]:
            if await self.store.processed(user_id, [event.id]):
                return []
            model = await self.store.load(user_id)
            result = MergeResult(model, []) if apply is None else apply(
                model, {**await self.store.events(user_id, cited), event.id: event},
                self._clock())
            await self.store.commit(result.model, expected_version=model.version,
                                    changes=result.changes, events=[event],
                                    processed_ids=[event.id], generation=generation)
            return result.changes

        return await self._retrying_conflicts(user_id, attempt)

    # -- profiles: segment traits and user outcomes, leverage across users ------------------

    async def identify(self, user_id: str, traits: Mapping[str, str | int | float | bool], *,
                       at: datetime | None = None, id: str | None = None) -> bool:
        """Declare the user's segment traits (plan, role, ...), as an `identify` event the
        product's stream may also send; the latest value of each trait wins. Returns False
        when this id was recorded before (the same traits and time without an id)."""
        when = at or self._clock()
        eid = id or default_id(user_id, IDENTIFY, sorted(traits.items()), when.isoformat())
        event = parse_event({"id": eid, "user_id": user_id, "type": IDENTIFY,
                             "timestamp": when, "properties": dict(traits)})
        if await self._kept(user_id, eid):
            return False
        await self._keep_event(user_id, event)
        return True

    async def record_user_outcome(self, user_id: str, outcome: str, *,
                                  at: datetime | None = None, id: str | None = None) -> None:
        """Record that the user reached an outcome (converted, churned, renewed, ...): what
        `leverage` compares users by. Outcome events of type `converted` or `churned` in
        the event stream count the same; the same `id` twice is recorded once."""
        when = at or self._clock()
        eid = id or default_id(user_id, USER_OUTCOME, outcome, when.isoformat())
        event = parse_event({"id": eid, "user_id": user_id, "type": USER_OUTCOME,
                             "timestamp": when, "properties": {"outcome": outcome}})
        await self._keep_event(user_id, event)

    async def _kept(self, user_id: str, event_id: str) -> bool:
        return bool(await self.store.processed(user_id, [event_id]))

    async def profile(self, user_id: str) -> UserProfile:
        """The user's model with the traits and outcomes their kept events declare."""
        exported = await self.store.export_user(user_id)
        events = [Event.model_validate(e) for e in exported.get("events", [])
                  if e.get("type") in (*PROFILE_TYPES, RECORD_OUTCOME)]
        return UserProfile.of(await self.store.load(user_id), events)

    async def profiles(self, tenant: str | None = None) -> list[UserProfile]:
        """Every user's profile, or only those of one tenant of `doxa serve` (its users are
        stored as `<tenant>/<id>`); reads each user's events: an analysis, not a hot path."""
        users = await self.store.users()
        if tenant is not None:
            users = [u for u in users if _tenant_of(u) == tenant]
        return [await self.profile(u) for u in users]

    async def leverage(self, outcome: str, *, against: str | None = None,
                       by: GroupBy = "statement-cluster", min_users: int = 3,
                       kinds: Sequence[str] | None = None,
                       matcher: Literal["lexical", "embedding"] = "lexical",
                       tenant: str | None = None) -> LeverageReport:
        """Record groups ranked by how strongly holding them goes with reaching `outcome`
        across users (one tenant's, with `tenant`), with counts and a 95% interval for each
        lift (associations, not causes; see `doxa.core.leverage`). `model.leverage(report)`
        ranks one user's."""
        return leverage(await self.profiles(tenant), outcome, against=against, by=by,
                        min_users=min_users, kinds=kinds, similarity=_similarity(matcher))
    def _outcome_count(self, model: UserModel, record_id: str, outcome: Outcome,
                       when: datetime) -> OutcomeCount:
        """The outcome as a label for calibration: the record as delivery read it at `when`
        (decayed, then calibrated), right when the user engaged or converted."""
        record = model.get(record_id)
        profile = self.calibrator.profile_for(record)
        delivered = self.calibrator.calibrate(
            decayed_model(model.with_records([record]), when, self.merge_config.confidence))
        return outcome_count(model.user_id, profile=profile.name if profile else None,
                             model=self.spec.label, prompt_version=record.prompt_version,
                             kind=record.kind, confidence=delivered.records[0].confidence,
                             outcome=outcome)

    # -- queries and housekeeping ---------------------------------------------------------

    async def model(self, user_id: str, *, at: datetime | None = None,
                    segment_by: Sequence[str] | None = None,
                    segment_min_confidence: float = 0.6) -> UserModel:
        """The user's model, for delivery code: `beliefs()`, `goals()`, `explain(id)`...

        With `at`, confidences are faded to that moment (records not reinforced for a while
        count for less); without it they are as of each record's last evidence. With
        `segment_by` (trait names such as plan, role), the model carries what users sharing
        those traits hold, for `value(..., fallback="segment")` and `top(...)`; that reads
        every user's profile, so a hot path should cache the model it returns.
        Then each confidence is read through the calibration profile of the model and
        prompt version that produced the record (`model.calibrated` says whether every
        one was).
        """
        model = await self.store.load(user_id)
        if at is not None:
            model = self.calibrator.calibrate(
                decayed_model(model, at, self.merge_config.confidence))
        else:  # the same object between commits, so the server can keep its pages
            model = self._calibrated.of(model, self.calibrator)
        if segment_by is None:
            return model
        own = replace(await self.profile(user_id), model=model)
        # A tenant's user is compared with that tenant's users only (users stored without
        # a tenant, with each other).
        segment = segment_of(own, await self.profiles(_tenant_of(user_id)), list(segment_by),
                             min_confidence=segment_min_confidence)
        return model.model_copy(update={"segment": segment})

    async def users(self) -> list[str]:
        return await self.store.users()

    async def outcome_counts(self, user_id: str | None = None) -> list[OutcomeCount]:
        """Delivery outcomes counted per profile, kind and confidence bin: one user's, or
        every user's with None (`doxa calibration` reads them)."""
        return await self.store.outcome_counts(user_id)

    async def delete_user(self, user_id: str) -> None:
        """Forget the user: records, evidence, history, events, ledger and cached answers."""
        await self.store.delete_user(user_id)
        self._calibrated.forget(user_id)
        if self._cache_store is not None and self._cache_store is not self.store:
            await self._cache_store.delete_user(user_id)

    async def export_user(self, user_id: str) -> dict[str, Any]:
        return await self.store.export_user(user_id)

    async def close(self) -> None:
        """Release the store (and the cache's own store) and the HTTP client doxa built;
        `async with Engine(...)` calls it on the way out."""
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
                    *, skip_invalid: bool = False, why: bool | None = None) -> IngestResult:
        """`ingest` for code without an event loop."""
        return self._run("ingest", lambda: self.ingest(user_id, events,
                                                       skip_invalid=skip_invalid, why=why))

    def add_sync(self, user_id: str, event: Event | Mapping[str, Any]) -> None:
        """`add` for code without an event loop."""
        self._run("add", lambda: self.add(user_id, event))

    def add_many_sync(self, events: Sequence[Event | Mapping[str, Any]]) -> int:
        return self._run("add_many", lambda: self.add_many(events))

    def model_sync(self, user_id: str, *, at: datetime | None = None) -> UserModel:
        return self._run("model", lambda: self.model(user_id, at=at))

    def record_outcome_sync(self, user_id: str, record_id: str, outcome: Outcome,
                            **kwargs: Any) -> list[Change]:
        return self._run("record_outcome",
                         lambda: self.record_outcome(user_id, record_id, outcome, **kwargs))

    def observe_sync(self, user_id: str, kind: str, statement: str,
                     **kwargs: Any) -> list[Change]:
        """`observe` for code without an event loop."""
        return self._run("observe", lambda: self.observe(user_id, kind, statement, **kwargs))

    def link_sync(self, user_id: str, goal_id: str, relation: Relation, target_id: str,
                  **kwargs: Any) -> list[Change]:
        """`link` for code without an event loop."""
        return self._run("link", lambda: self.link(user_id, goal_id, relation, target_id,
                                                   **kwargs))

    def delete_user_sync(self, user_id: str) -> None:
        self._run("delete_user", lambda: self.delete_user(user_id))

    def close_sync(self) -> None:
        self._run("close", self.close)
        if self._runner is not None:
            self._runner.close()
            self._runner = None


async def _as_coro(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _tenant_of(user_id: str) -> str:
    """The tenant part of a stored user id (`doxa serve` stores `<tenant>/<id>`); "" for a
    user stored without one."""
    return user_id.rpartition("/")[0]


def _similarity(matcher: Literal["lexical", "embedding"]) -> Similarity | None:
    """The statement matcher leverage clusters with (None: the lexical default)."""
    if matcher == "lexical":
        return None
    from doxa.eval.embed import embedding_similarity  # the optional `embeddings` extra

    return embedding_similarity()


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
    result.dropped += _dropped_info(outcome.batch_id, outcome.dropped)


def _dropped_info(batch_id: str, dropped: Sequence[DroppedRecord]) -> list[DroppedInfo]:
    return [DroppedInfo(batch_id=batch_id, kind=d.record.kind, statement=d.record.statement,
                        reasons=d.reasons) for d in dropped]


def _account_why(result: IngestResult, found: WhyOutcome) -> None:
    result.count(found.usage)
    result.dropped += _dropped_info(found.batch_id, found.dropped_records)
    result.dropped_links += [
        DroppedLinkInfo(batch_id=found.batch_id, link=d.describe(), reasons=d.reasons)
        for d in found.dropped_links
    ]
    if found.failure is not None:
        result.dropped_links.append(DroppedLinkInfo(
            batch_id=found.batch_id, link="(the whole answer)",
            reasons=[f"the answer did not parse: {found.failure}"]))


@dataclass(frozen=True)
class _Draft:
    """A user's model as merged so far, the stored version it was merged from, and the
    changes made to it: what one commit writes."""

    base_version: int
    model: UserModel
    changes: list[Change]

    @classmethod
    def of(cls, stored: UserModel) -> _Draft:
        return cls(stored.version, stored, [])


def _cited_events(draft: _Draft, batches: Sequence[Batch]) -> list[Event]:
    """The batches' events that a changed record cites: stored so `explain` can show them.

    Only records this ingest changed can cite this ingest's events, so the scan is over
    the changes, not the whole model."""
    changed = {c.record_id for c in draft.changes}
    cited = cited_event_ids(r for rid in changed if (r := draft.model.find(rid)) is not None)
    # Profile events (identify traits, converted/churned outcomes) are kept uncited too:
    # segments and leverage read them.
    return [ev for b in batches for eid, ev in b.events.items()
            if eid in cited or is_profile_event(ev)]
