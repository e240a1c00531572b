"""The conversation with the LLM: one call per batch, validated, re-asked, retried, cached.

Validation errors are re-asked through instructor (bounded); transient provider errors are
retried with tenacity (exponential backoff with jitter, honouring Retry-After, bounded);
what stays invalid is dropped and counted, never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from doxa.core.injection import speaking_event_ids
from doxa.errors import ContextLengthError, ExtractionValidationError, ProviderError
from doxa.llm.provider_errors import is_retryable, provider_error, retry_after_seconds
from doxa.llm.providers import ProviderSpec
from doxa.llm.ratelimit import RateLimiter
from doxa.llm.schema import (
    VALIDATION,
    BaseExtraction,
    DroppedRecord,
    Extraction,
    Proposal,
    ValidationContext,
    extraction_model,
    record_type_of,
    split_valid,
)
from doxa.model.schema import ModelSchema
from doxa.prompts.render import Messages
from doxa.relevance import Batch, estimate_tokens

log = logging.getLogger(__name__)

SCHEMA_VERSION = hashlib.sha256(
    json.dumps(Extraction.model_json_schema(), sort_keys=True).encode()
).hexdigest()[:10]


@dataclass(frozen=True)
class RetryPolicy:
    """How transient provider errors are retried: bounded in attempts and in time."""

    attempts: int = 5
    max_seconds: float = 120.0
    backoff_base: float = 1.0
    backoff_max: float = 30.0

    def retrying(self) -> AsyncRetrying:
        """The retry loop every provider call runs in (doxa's extraction, the eval's naive
        baseline): transient errors only, bounded in attempts and time, logged."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_seconds),
            wait=self.wait, retry=retry_if_exception(is_retryable), reraise=True,
            before_sleep=_log_retry)

    def wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, or the provider's Retry-After when it gives one
        (capped at `backoff_max`)."""
        exc = state.outcome.exception() if state.outcome else None
        hinted = retry_after_seconds(exc) if exc is not None else None
        if hinted is not None:
            return min(self.backoff_max, hinted)
        return float(wait_random_exponential(multiplier=self.backoff_base,
                                             max=self.backoff_max)(state))


@dataclass(frozen=True)
class ExtractionSettings:
    """How an extraction is asked for; all but the timeout change the answer and are part of
    the cache key."""

    temperature: float = 0.0
    max_tokens: int = 2048
    reasks: int = 2
    """instructor re-asks after the first answer, for validation errors only."""
    timeout_s: float = 120.0
    """Per request; a timed-out request is retried like any transient fault."""
    nonempty_when_text: bool = True
    """When the user wrote something substantive (a text of 4+ words not flagged as an
    injection), ask for at least one record. Small models answer an empty list far too
    readily; what they then propose is still validated, merged and scored like any other.
    Turn off for models that reliably tell small talk from signal."""


@dataclass
class ExtractionOutcome:
    """What one batch's extraction produced, and what it cost."""

    batch_id: str
    proposals: list[Proposal]
    dropped: list[DroppedRecord]
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cache_hit: bool = False
    reasks: int = 0


class _Cached(BaseModel):
    records: list[dict[str, Any]]
    dropped: list[tuple[dict[str, Any], list[str]]]
    input_tokens: int
    output_tokens: int


CacheGet = Callable[[str], Awaitable[str | None]]
CachePut = Callable[[str, str], Awaitable[None]]


@dataclass
class _Usage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, response: Any) -> None:
        self.calls += 1
        usage = getattr(response, "usage", None)
        if usage is None:
            return
        self.input_tokens += int(
            getattr(usage, "prompt_tokens", None) or getattr(usage, "input_tokens", 0) or 0
        )
        self.output_tokens += int(
            getattr(usage, "completion_tokens", None) or getattr(usage, "output_tokens", 0) or 0
        )


@dataclass
class Extractor:
    """Runs extraction for batches against one provider client."""

    spec: ProviderSpec
    client: Any
    settings: ExtractionSettings = field(default_factory=ExtractionSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    schema: ModelSchema | None = None
    limiter: RateLimiter | None = None

    def __post_init__(self) -> None:
        self.response_model = extraction_model(self.schema)
        self._nonempty_model = extraction_model(self.schema, at_least_one=True)
        self._record_type = record_type_of(self.response_model)
        self._schema_version = SCHEMA_VERSION if self.schema is None else hashlib.sha256(
            json.dumps(self.response_model.model_json_schema(), sort_keys=True).encode()
        ).hexdigest()[:10]

    def cache_key(self, messages: Messages) -> str:
        payload = json.dumps(
            [self.spec.label, self.spec.base_url or "", self.settings.temperature,
             self.settings.max_tokens, self.settings.reasks, self._schema_version,
             messages.system, messages.user],
        )
        return "x_" + hashlib.sha256(payload.encode()).hexdigest()

    async def extract(
        self, batch: Batch, messages: Messages, *,
        cache_get: CacheGet | None = None, cache_put: CachePut | None = None,
    ) -> ExtractionOutcome:
        """One validated extraction for the batch (from the cache when allowed)."""
        key = self.cache_key(messages)
        ctx = ValidationContext(batch=batch, known_record_ids=messages.known_record_ids,
                                schema=self.schema)
        if cache_get is not None and (hit := await cache_get(key)) is not None:
            # The stored answer is validated again, so a fixed validator applies to it too.
            cached = _Cached.model_validate_json(hit)
            records = [self._record_type.model_validate(r)
                       for r in [*cached.records, *(r for r, _ in cached.dropped)]]
            kept, dropped = split_valid(BaseExtraction.model_construct(notes="", records=records),
                                         ctx)
            return ExtractionOutcome(batch.id, kept, dropped, cache_hit=True)
        started = time.perf_counter()
        usage = _Usage()
        extraction = await self._call_with_retries(batch, messages, ctx, usage)
        kept, dropped = split_valid(extraction, ctx)
        if dropped:
            log.info("batch %s: dropped %d invalid record(s)", batch.id, len(dropped))
        outcome = ExtractionOutcome(
            batch.id, kept, dropped, calls=usage.calls, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, latency_s=time.perf_counter() - started,
            reasks=max(0, len(ctx.attempts) - 1),
        )
        if cache_put is not None:
            await cache_put(key, _Cached(
                records=[r.model_dump(mode="json") for r in kept],
                dropped=[(d.record.model_dump(mode="json"), d.reasons) for d in dropped],
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            ).model_dump_json())
        return outcome

    async def _call_with_retries(
        self, batch: Batch, messages: Messages, ctx: ValidationContext, usage: _Usage
    ) -> BaseExtraction:
        try:
            async for attempt in self.retry.retrying():
                with attempt:
                    if self.limiter is not None:
                        await self.limiter.acquire(self._expected_tokens(messages))
                    try:
                        result = await self._call_once(batch, messages, ctx, usage)
                    except Exception as exc:
                        found = provider_error(exc)
                        if self.limiter is not None and found is not None and found.status == 429:
                            self.limiter.on_rate_limited(found.retry_after)
                        raise
                    if self.limiter is not None:
                        self.limiter.on_success()
                    return result
        except Exception as exc:
            found = provider_error(exc)
            if found is None:
                raise
            raise found from exc
        raise AssertionError("tenacity ended without a result")  # pragma: no cover

    def _model_for(self, batch: Batch) -> type[BaseExtraction]:
        speaking = speaking_event_ids(batch.items) if self.settings.nonempty_when_text else None
        if speaking is not None and any(
                item.text and len(item.text.split()) >= 4 and item.ref not in speaking
                for item in batch.items):
            return self._nonempty_model
        return self.response_model

    def _expected_tokens(self, messages: Messages) -> int:
        """What a call may count against a tokens-per-minute limit: prompt plus answer."""
        return estimate_tokens(messages.system + messages.user) + self.settings.max_tokens // 4

    async def _call_once(
        self, batch: Batch, messages: Messages, ctx: ValidationContext, usage: _Usage
    ) -> BaseExtraction:
        from instructor.v2.core.hooks import Hooks

        hooks = Hooks()
        hooks.on("completion:response", usage.add)
        token = VALIDATION.set(ctx)
        try:
            result: BaseExtraction = await self.client.create(
                response_model=self._model_for(batch), max_retries=self.settings.reasks,
                hooks=hooks, **self._request(messages),
            )
            return result
        except Exception as exc:
            found = provider_error(exc)
            if isinstance(found, ContextLengthError) and ctx.attempts:
                # The first answer came back but the re-ask (the conversation plus the
                # errors) no longer fits the context: keep what of that answer is valid.
                log.info("batch %s: re-ask exceeds the context; dropping invalid records",
                         batch.id)
                return ctx.attempts[-1]
            if found is not None:
                raise
            if ctx.attempts:
                return ctx.attempts[-1]  # still invalid after re-asking: split_valid drops
            if isinstance(getattr(exc, "last_completion", None), str | bytes):
                # A gateway page or other non-JSON body: the provider's fault, worth a retry.
                raise ProviderError("provider answered a body that is not a completion "
                                    "(non-JSON)", retryable=True) from exc
            raise ExtractionValidationError(batch.id, _reasons(exc)) from exc
        finally:
            VALIDATION.reset(token)

    # -- the two halves of a call, for answers obtained elsewhere (a provider's batch API) --

    def request_body(self, batch: Batch, messages: Messages) -> dict[str, Any]:
        """The JSON body the online path would send for this batch, for a batch API line.

        Built by instructor's own request handler from the same messages, response model and
        settings as `extract`, so a batched request asks exactly what an online one asks (the
        client-side timeout is not part of the body and is left out).
        """
        from instructor.v2.core.response_model import prepare_response_model

        handlers = self._handlers()
        kwargs = self._request(messages)
        kwargs.pop("timeout", None)
        _, body = handlers.request_handler(
            response_model=prepare_response_model(self._model_for(batch)), kwargs=kwargs)
        if handlers.message_converter is not None and "messages" in body:
            body["messages"] = handlers.message_converter(body["messages"],
                                                          autodetect_images=False)
        return dict(body)

    def parse_answer(self, batch: Batch, known_record_ids: frozenset[str],
                     response: Any) -> ExtractionOutcome:
        """Validate one answer obtained outside `extract` exactly as an online answer.

        `response` is the SDK's own object (`ChatCompletion` or Anthropic `Message`). The same
        parser, `ValidationContext` and `split_valid` apply; only the re-ask is impossible, so
        a record that fails validation is dropped and counted, and an answer that does not
        parse at all raises `ExtractionValidationError`. The at-least-one-record nudge only
        exists to trigger a re-ask, so an empty answer is accepted here as "nothing new".
        """
        ctx = ValidationContext(batch=batch, known_record_ids=known_record_ids,
                                schema=self.schema)
        usage = _Usage()
        usage.add(response)
        token = VALIDATION.set(ctx)
        try:
            extraction: BaseExtraction = self._handlers().response_parser(
                response=response, response_model=self.response_model, validation_context=None,
                strict=True, stream=False, is_async=True)
        except Exception as exc:
            if not ctx.attempts:
                raise ExtractionValidationError(batch.id, _reasons(exc)) from exc
            extraction = ctx.attempts[-1]  # parsed, but some records failed: split_valid drops
        finally:
            VALIDATION.reset(token)
        kept, dropped = split_valid(extraction, ctx)
        return ExtractionOutcome(batch.id, kept, dropped, calls=usage.calls,
                                 input_tokens=usage.input_tokens,
                                 output_tokens=usage.output_tokens)

    def _handlers(self) -> Any:
        """instructor's TOOLS-mode handlers for this client's provider (request and parse)."""
        from instructor import Mode
        from instructor.v2.core.providers import Provider
        from instructor.v2.core.registry import mode_registry

        default = Provider.ANTHROPIC if self.spec.wire == "anthropic" else Provider.OPENAI
        provider = getattr(self.client, "provider", None) or default
        return mode_registry.get_handlers(provider, getattr(self.client, "mode", Mode.TOOLS))

    def _request(self, messages: Messages) -> dict[str, Any]:
        if self.spec.wire == "anthropic":
            # Static system text first, marked cacheable: provider prompt caching applies.
            return {
                "model": self.spec.model, "max_tokens": self.settings.max_tokens,
                "timeout": self.settings.timeout_s,
                "system": [{"type": "text", "text": messages.system,
                            "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": messages.user}],
            }
        return {
            "model": self.spec.model, "messages": messages.as_openai(),
            "temperature": self.settings.temperature, "max_tokens": self.settings.max_tokens,
            "timeout": self.settings.timeout_s,
        }


def token_usage(response: Any) -> tuple[int, int]:
    """Input and output tokens a provider response reports ((0, 0) when it reports none)."""
    usage = _Usage()
    usage.add(response)
    return usage.input_tokens, usage.output_tokens


def _reasons(exc: BaseException) -> list[str]:
    cur: BaseException | None = exc
    while cur is not None:
        e = cur
        if isinstance(e, ValidationError):
            return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:10]]
        cur = e.__cause__
    return [str(exc)[:500]]


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("provider call failed (%s); retry %d", exc, state.attempt_number)
