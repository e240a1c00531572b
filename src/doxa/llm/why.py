"""The why pass: one short call, after a batch's extraction, for the causal links between
its records and the known ones (`doxa.prompts.why` asks; `doxa.llm.why_schema` judges).

Opt-in (`Engine(why=True)`, `doxa ingest --why`), and made only for a batch whose
extraction proposed a goal: a link always starts from one, so without a goal there is
nothing to ask and nothing is spent. The main extraction prompt and its cost stay as they
are. The answer is not re-asked: a link whose evidence fails even after repair is dropped
with its reasons (links are few and cheap to miss; a re-ask would double the pass's cost).
An answer that does not parse drops the pass's links for that batch, never the batch's
records. Answers are cached like extractions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from doxa.core.links import LinkProposal
from doxa.errors import ExtractionValidationError
from doxa.llm.client import LLMClient, UsageMeter
from doxa.llm.evidence import ChatValidation
from doxa.llm.extractor import CacheGet, CachePut, ExtractionSettings
from doxa.llm.provider_errors import provider_error
from doxa.llm.providers import Prompt
from doxa.llm.schema import DroppedRecord, Proposal, WireModel
from doxa.llm.why_schema import DroppedLink, WhyReview, answer_model, review_why
from doxa.model.records import UserModel
from doxa.model.schema import ModelSchema
from doxa.prompts.why import WhyMessages, WhyPrompt, shown_records
from doxa.relevance import Batch, estimate_tokens
from doxa.usage import Usage

log = logging.getLogger(__name__)

WHY_MAX_TOKENS = 1024
"""The answer's token budget: a handful of links and records is far below it."""


@dataclass
class WhyOutcome:
    """What one batch's why pass proposed, refused and cost. Link ends are `#<n>` over the
    batch's extracted proposals followed by `records` (the new motivations and constraints),
    or known record ids."""

    batch_id: str
    prompt_version: str
    records: list[Proposal] = field(default_factory=list)
    links: list[LinkProposal] = field(default_factory=list)
    dropped_records: list[DroppedRecord] = field(default_factory=list)
    dropped_links: list[DroppedLink] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    failure: str | None = None
    """Why the answer gave nothing at all (it did not parse), when so."""


class _Cached(BaseModel):
    answer: dict[str, Any]
    input_tokens: int
    output_tokens: int


@dataclass
class WhyAsker:
    """Asks the why pass through an extractor's own client, settings and limiter."""

    llm: LLMClient
    settings: ExtractionSettings = field(default_factory=ExtractionSettings)
    schema: ModelSchema | None = None
    prompt: WhyPrompt | None = None

    def __post_init__(self) -> None:
        if self.prompt is None:
            self.prompt = WhyPrompt(new_records=self.schema is None)
        self.response_model: type[WireModel] = answer_model(self.prompt.new_records)
        self._schema_version = hashlib.sha256(json.dumps(
            self.response_model.model_json_schema(), sort_keys=True).encode()).hexdigest()[:10]

    @property
    def version(self) -> str:
        assert self.prompt is not None
        return self.prompt.version

    def messages(self, batch: Batch, proposals: Sequence[Proposal], model: UserModel,
                 known_record_ids: frozenset[str]) -> WhyMessages | None:
        """The why prompt for a batch's proposals; None when none is a goal (no call)."""
        assert self.prompt is not None
        if not any(p.kind == "goal" for p in proposals):
            return None
        return self.prompt.render(batch, shown_records(proposals, model, known_record_ids),
                                  known_record_ids)

    def cache_key(self, why: WhyMessages) -> str:
        payload = json.dumps([self.llm.spec.label, self.llm.spec.base_url or "",
                              self.settings.temperature, self._schema_version,
                              why.messages.system, why.messages.user])
        return "w_" + hashlib.sha256(payload.encode()).hexdigest()

    async def ask(self, batch: Batch, proposals: Sequence[Proposal], why: WhyMessages, *,
                  cache_get: CacheGet | None = None,
                  cache_put: CachePut | None = None) -> WhyOutcome:
        """One why call for the batch (from the cache when allowed), reviewed."""
        ctx = ChatValidation(batch=batch, known_record_ids=why.messages.known_record_ids,
                             schema=self.schema)
        key = self.cache_key(why)
        if cache_get is not None and (hit := await cache_get(key)) is not None:
            cached = _Cached.model_validate_json(hit)
            answer = self.response_model.model_validate(cached.answer)
            return self._outcome(batch, review_why(answer, why, ctx, len(proposals)), Usage())
        started = time.perf_counter()
        meter = self.llm.meter()
        failure: str | None = None
        try:
            parsed: BaseModel | None = await self.llm.call(
                lambda: self._call_once(batch.id, why, meter),
                tokens=estimate_tokens(why.messages.system + why.messages.user)
                + WHY_MAX_TOKENS // 4)
        except ExtractionValidationError as exc:
            parsed, failure = None, "; ".join(exc.reasons)
        used = meter.total
        usage = used.model_copy(update={
            "latency_s": time.perf_counter() - started, "why_calls": used.llm_calls,
            "why_input_tokens": used.input_tokens, "why_output_tokens": used.output_tokens})
        if parsed is None:
            log.info("batch %s: the why answer did not parse: %s", batch.id, failure)
            outcome = self._outcome(batch, WhyReview(), usage)
            outcome.failure = failure
            return outcome
        if cache_put is not None:
            await cache_put(key, _Cached(answer=parsed.model_dump(mode="json"),
                                         input_tokens=used.input_tokens,
                                         output_tokens=used.output_tokens).model_dump_json())
        return self._outcome(batch, review_why(parsed, why, ctx, len(proposals)), usage)

    def _outcome(self, batch: Batch, review: WhyReview, usage: Usage) -> WhyOutcome:
        return WhyOutcome(batch.id, self.version, review.records, review.links,
                          review.dropped_records, review.dropped_links,
                          usage.model_copy(update={"repairs": (usage.repairs or 0)
                                                   + review.repairs}))

    async def _call_once(self, batch_id: str, why: WhyMessages,
                         meter: UsageMeter) -> BaseModel:
        """The call; re-asked by instructor once while the answer does not parse, then
        `ExtractionValidationError` (not a provider fault, so never retried as one)."""
        from instructor.v2.core.hooks import Hooks

        hooks = Hooks()
        hooks.on("completion:response", meter)
        try:
            answer: BaseModel = await self.llm.client.create(
                response_model=self.response_model, max_retries=min(1, self.settings.reasks),
                hooks=hooks, **self.llm.request(Prompt(
                    user=why.messages.user, system=why.messages.system,
                    max_tokens=WHY_MAX_TOKENS, temperature=self.settings.temperature,
                    timeout_s=self.settings.timeout_s)))
            return answer
        except Exception as exc:
            if provider_error(exc) is not None:
                raise
            raise ExtractionValidationError(batch_id, [str(exc)[:300]]) from exc
