"""The conversation with the LLM: one call per batch, validated, repaired, re-asked only
where needed, retried, cached.

An answer that does not parse is re-asked through instructor (bounded). An answer that
parses is reviewed record by record (`doxa.llm.evidence`): evidence doxa can mend itself
is mended, a record resting only on another speaker's words is refused, and only the
records that still fail are re-asked, with only the events they cite
(`doxa.prompts.reask`), so a re-ask costs a fraction of the first call. Transient provider
errors are retried by the front door every LLM call goes through (`doxa.llm.client`); what
stays invalid is dropped and counted, never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from doxa.core.injection import speaking_event_ids
from doxa.errors import ContextLengthError, ExtractionValidationError, ProviderError
from doxa.events.speakers import is_users_own
from doxa.llm.client import LLMClient, RetryPolicy, UsageMeter
from doxa.llm.evidence import (
    ChatValidation,
    Review,
    dump_with_repairs,
    restore_repairs,
    review,
    review_records,
)
from doxa.llm.provider_errors import provider_error
from doxa.llm.providers import Prompt, ProviderSpec
from doxa.llm.ratelimit import RateLimiter
from doxa.llm.schema import (
    VALIDATION,
    BaseExtraction,
    DroppedRecord,
    Extraction,
    Proposal,
    extraction_model,
    record_type_of,
)
from doxa.model.schema import ModelSchema
from doxa.prompts.limits import MAX_RECORDS
from doxa.prompts.reask import Failing, ReaskPrompt
from doxa.prompts.render import Messages
from doxa.prompts.stated import StatedSentence, unrecorded
from doxa.relevance import Batch, estimate_tokens
from doxa.usage import Usage

if TYPE_CHECKING:  # the why pass builds on the extractor, not the reverse
    from doxa.llm.why import WhyOutcome

log = logging.getLogger(__name__)

UNRECORDED = ("no record was written for these words of the person's: if they show a "
              "preference, goal or belief, write it as a short statement that opens with its "
              "verb (\"Prefers …\", \"Avoids …\", \"Does not …\", \"Needs …\", "
              "\"Wants to …\", \"Believes …\"); leave it out if they show none")
"""What a re-ask says of a stated sentence the first answer passed over."""

SCHEMA_VERSION = hashlib.sha256(
    json.dumps(Extraction.model_json_schema(), sort_keys=True).encode()
).hexdigest()[:10]


@dataclass(frozen=True)
class ExtractionSettings:
    """How an extraction is asked for; all but the timeout change the answer and are part of
    the cache key."""

    temperature: float = 0.0
    max_tokens: int = 2048
    reasks: int = 2
    """Re-asks after the first answer, for validation errors only: of an answer that does
    not parse (instructor's, the whole conversation again), and rounds of targeted re-asks
    of the records whose evidence still fails after repair (only those records and the
    events they cite)."""
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
    usage: Usage = field(default_factory=Usage)
    """Calls, tokens, re-asks and repairs; a cached answer is one cache hit (and the repairs
    its review made again) and nothing else."""
    reasked: bool = False
    """The answer needed a re-ask to validate (kept with a cached answer too)."""
    why: WhyOutcome | None = None
    """The why pass's links and records for this batch, when it was asked (`doxa.llm.why`)."""

    @property
    def input_tokens(self) -> int:
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.usage.output_tokens


class _Cached(BaseModel):
    records: list[dict[str, Any]]
    dropped: list[tuple[dict[str, Any], list[str]]]
    input_tokens: int
    output_tokens: int
    repairs: int = 0
    """Evidence the answer's review mended (reported again on every replay)."""
    reasks: int = 0


CacheGet = Callable[[str], Awaitable[str | None]]
CachePut = Callable[[str, str], Awaitable[None]]


@dataclass
class Extractor:
    """Runs extraction for batches against one provider client."""

    spec: ProviderSpec
    client: Any
    settings: ExtractionSettings = field(default_factory=ExtractionSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    schema: ModelSchema | None = None
    limiter: RateLimiter | None = None

    reask_prompt: ReaskPrompt = field(default_factory=ReaskPrompt)

    def __post_init__(self) -> None:
        self.llm = LLMClient(self.spec, self.client, self.retry, self.limiter)
        self.response_model = extraction_model(self.schema)
        self._asked = {
            (nonempty, known): extraction_model(self.schema, at_least_one=nonempty,
                                                known_records=known)
            for nonempty in (False, True) for known in (False, True)
        }
        self._record_type = record_type_of(self.response_model)
        self._reask_models = {known: _records_only(self._asked[False, known])
                              for known in (False, True)}
        self._schema_version = SCHEMA_VERSION if self.schema is None else hashlib.sha256(
            json.dumps(self.response_model.model_json_schema(), sort_keys=True).encode()
        ).hexdigest()[:10]

    def cache_key(self, messages: Messages) -> str:
        payload = json.dumps(
            [self.spec.label, self.spec.base_url or "", self.settings.temperature,
             self.settings.max_tokens, self.settings.reasks, self._schema_version,
             self.reask_prompt.version, messages.system, messages.user],
        )
        return "x_" + hashlib.sha256(payload.encode()).hexdigest()

    async def extract(
        self, batch: Batch, messages: Messages, *,
        cache_get: CacheGet | None = None, cache_put: CachePut | None = None,
    ) -> ExtractionOutcome:
        """One validated extraction for the batch (from the cache when allowed)."""
        key = self.cache_key(messages)
        ctx = ChatValidation(batch=batch, known_record_ids=messages.known_record_ids,
                             schema=self.schema, example_statements=messages.example_statements)
        if cache_get is not None and (hit := await cache_get(key)) is not None:
            # The stored answer is reviewed again, so a fixed validator applies to it too.
            cached = _Cached.model_validate_json(hit)
            records = [restore_repairs(self._record_type.model_validate(r), r)
                       for r in [*cached.records, *(r for r, _ in cached.dropped)]]
            done = review_records(records, ctx).settled()
            return ExtractionOutcome(batch.id, done.kept, done.dropped,
                                     Usage(cache_hits=1, repairs=cached.repairs + done.repairs,
                                           cached_calls=1 + cached.reasks,
                                           cached_input_tokens=cached.input_tokens,
                                           cached_output_tokens=cached.output_tokens),
                                     reasked=cached.reasks > 0)
        started = time.perf_counter()
        meter = self.llm.meter()
        extraction = await self.llm.call(
            lambda: self._call_once(batch, messages, ctx, meter),
            tokens=self._expected_tokens(messages))
        reask_meter = self.llm.meter()
        first = review(extraction, ctx)
        result = await self._reask(batch, first, ctx, reask_meter,
                                   missed=unrecorded(messages.stated, first.cited(),
                                                     asking_anyway=bool(first.fixable)))
        if result.dropped:
            log.info("batch %s: dropped %d invalid record(s)", batch.id, len(result.dropped))
        reasked = meter.after_first + reask_meter.total
        usage = (meter.total + reask_meter.total).model_copy(update={
            "latency_s": time.perf_counter() - started,
            "reasks": reasked.llm_calls, "repairs": result.repairs,
            "reask_input_tokens": reasked.input_tokens,
            "reask_output_tokens": reasked.output_tokens})
        if cache_put is not None:
            await cache_put(key, _Cached(
                records=[dump_with_repairs(r) for r in result.kept],
                dropped=[(dump_with_repairs(d.record), d.reasons) for d in result.dropped],
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                repairs=result.repairs, reasks=usage.reasks or 0,
            ).model_dump_json())
        return ExtractionOutcome(batch.id, result.kept, result.dropped, usage,
                                 reasked=bool(usage.reasks))

    async def _reask(self, batch: Batch, first: Review, ctx: ChatValidation,
                     meter: UsageMeter, missed: Sequence[StatedSentence] = ()) -> Review:
        """Re-ask the records `first` left fixable, in rounds of only those records, their
        problems and the events they cite, until none is left or the re-asks are spent.
        The first round also asks about the `missed` sentences (stated plainly, cited by no
        record), in the same call when there are records to fix anyway."""
        result = first
        for _ in range(self.settings.reasks):
            if not result.fixable and not missed:
                break
            asked, waiting = result.fixable[:MAX_RECORDS], result.fixable[MAX_RECORDS:]
            failing = [Failing(d.record.model_dump(mode="json", exclude_defaults=True),
                               d.reasons) for d in asked]
            sentences = missed[:MAX_RECORDS - len(asked)]
            failing += [Failing({"evidence": [{"event_id": s.event_id, "quote": s.text}]},
                                [UNRECORDED]) for s in sentences]
            missed = ()
            messages = self.reask_prompt.render(batch, failing, ctx.known_record_ids)
            if "<event " not in messages.user:
                break  # no event of the batch could show them: nothing to ask
            try:
                answer = await self.llm.call(
                    partial(self._ask_again, messages, ctx, meter),
                    tokens=self._expected_tokens(messages))
            except ContextLengthError:
                log.info("batch %s: re-ask exceeds the context; dropping invalid records",
                         batch.id)
                break
            if answer is None:
                break  # the re-ask did not parse: what it asked about stays invalid
            result = Review(result.kept, result.dropped, waiting,
                            result.repairs).then(review(answer, ctx, sentences))
        return result.settled()

    async def _ask_again(self, messages: Messages, ctx: ChatValidation,
                         meter: UsageMeter) -> BaseExtraction | None:
        """One targeted re-ask; None when its answer does not parse (not re-asked again)."""
        from instructor.v2.core.hooks import Hooks

        hooks = Hooks()
        hooks.on("completion:response", meter)
        ctx.deferred = True
        token = VALIDATION.set(ctx)
        try:
            answer: BaseExtraction = await self.client.create(
                response_model=self._reask_models[bool(ctx.known_record_ids)],
                max_retries=0, hooks=hooks,
                **self._request(messages))
            return answer
        except Exception as exc:
            if provider_error(exc) is not None:
                raise
            return None
        finally:
            VALIDATION.reset(token)
            ctx.deferred = False

    def _model_for(self, batch: Batch, messages: Messages) -> type[BaseExtraction]:
        """The tool schema for this call: at least one record when the user wrote something
        substantive (`nonempty_when_text`), relation fields only when known records are
        shown."""
        speaking = speaking_event_ids(batch.items) if self.settings.nonempty_when_text else None
        nonempty = speaking is not None and any(
            item.text and len(item.text.split()) >= 4 and item.ref not in speaking
            and is_users_own(item.speaker) for item in batch.items)
        return self._asked[nonempty, bool(messages.known_record_ids)]

    def _expected_tokens(self, messages: Messages) -> int:
        """What a call may count against a tokens-per-minute limit: prompt plus answer."""
        return estimate_tokens(messages.system + messages.user) + self.settings.max_tokens // 4

    async def _call_once(
        self, batch: Batch, messages: Messages, ctx: ChatValidation, meter: UsageMeter
    ) -> BaseExtraction:
        """The first call: re-asked by instructor only while the answer does not parse;
        its evidence is judged afterwards (`review`), with repairs and targeted re-asks."""
        from instructor.v2.core.hooks import Hooks

        hooks = Hooks()
        hooks.on("completion:response", meter)
        ctx.deferred = True
        token = VALIDATION.set(ctx)
        try:
            result: BaseExtraction = await self.client.create(
                response_model=self._model_for(batch, messages), max_retries=self.settings.reasks,
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
                return ctx.attempts[-1]  # still invalid after re-asking: review drops
            if isinstance(getattr(exc, "last_completion", None), str | bytes):
                # A gateway page or other non-JSON body: the provider's fault, worth a retry.
                raise ProviderError("provider answered a body that is not a completion "
                                    "(non-JSON)", retryable=True) from exc
            raise ExtractionValidationError(batch.id, _reasons(exc)) from exc
        finally:
            VALIDATION.reset(token)
            ctx.deferred = False

    # -- the two halves of a call, for answers obtained elsewhere (a provider's batch API) --

    def request_body(self, batch: Batch, messages: Messages) -> dict[str, Any]:
        """The JSON body the online path would send for this batch, for a batch API line.

        Built by instructor's own request handler from the same messages, response model and
        settings as `extract`, so a batched request asks exactly what an online one asks (the
        client-side timeout is not part of the body and is left out).
        """
        from instructor.v2.core.response_model import prepare_response_model

        handlers = self.llm.handlers()
        kwargs = self._request(messages)
        kwargs.pop("timeout", None)
        _, body = handlers.request_handler(
            response_model=prepare_response_model(self._model_for(batch, messages)),
            kwargs=kwargs)
        if handlers.message_converter is not None and "messages" in body:
            body["messages"] = handlers.message_converter(body["messages"],
                                                          autodetect_images=False)
        return dict(body)

    def parse_answer(self, batch: Batch, known_record_ids: frozenset[str],
                     response: Any) -> ExtractionOutcome:
        """Validate one answer obtained outside `extract` exactly as an online answer.

        `response` is the SDK's own object (`ChatCompletion` or Anthropic `Message`). The same
        parser, `ChatValidation` and `review` apply (repairs too); only the re-ask is
        impossible, so a record that fails validation is dropped and counted, and an answer
        that does not parse at all raises `ExtractionValidationError`. The at-least-one-record
        nudge only exists to trigger a re-ask, so an empty answer is accepted here as "nothing
        new".
        """
        ctx = ChatValidation(batch=batch, known_record_ids=known_record_ids,
                             schema=self.schema, deferred=True)
        token = VALIDATION.set(ctx)
        try:
            extraction: BaseExtraction = self.llm.handlers().response_parser(
                response=response, response_model=self.response_model, validation_context=None,
                strict=True, stream=False, is_async=True)
        except Exception as exc:
            if not ctx.attempts:
                raise ExtractionValidationError(batch.id, _reasons(exc)) from exc
            extraction = ctx.attempts[-1]  # parsed, but some records failed: review drops
        finally:
            VALIDATION.reset(token)
        done = review(extraction, ctx).settled()
        return ExtractionOutcome(batch.id, done.kept, done.dropped,
                                 self.llm.usage(response).model_copy(
                                     update={"repairs": done.repairs}))

    def _request(self, messages: Messages) -> dict[str, Any]:
        return self.llm.request(Prompt(
            user=messages.user, system=messages.system, max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature, timeout_s=self.settings.timeout_s))


def _records_only(model: type[BaseExtraction]) -> type[BaseExtraction]:
    """The response model of a targeted re-ask: records only, of the extraction's own record
    type (no closed-dimension answers: those are folded into records already), none
    required (leaving a record out is a correct answer)."""
    record_type = record_type_of(model)
    if model is Extraction:
        return Extraction
    from pydantic import Field, create_model

    reask: type[BaseExtraction] = create_model(
        "Extraction", __base__=BaseExtraction,
        records=(list[record_type], Field(max_length=MAX_RECORDS)))  # type: ignore[valid-type]
    reask.record_type = record_type
    return reask


def _reasons(exc: BaseException) -> list[str]:
    cur: BaseException | None = exc
    while cur is not None:
        e = cur
        if isinstance(e, ValidationError):
            return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:10]]
        cur = e.__cause__
    return [str(exc)[:500]]
