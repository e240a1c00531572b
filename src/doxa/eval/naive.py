"""The naive baseline: the extractor anyone would write first, as the reference doxa must beat.

One call per case: every event of every batch as one line under a two-sentence instruction
(`prompts/naive/prompt.j2`), structured output through the same instructor client doxa
uses (same model, base URL, timeout, answer cache and transient-error retries). Nothing
else: no relevance scoring, no known-records slice, no check that ids exist or quotes are
in their event, no re-ask, no merge. What it answers is scored by the same matcher and
metrics as doxa, so `doxa eval compare DOXA_RUN NAIVE_RUN` says what doxa's machinery buys.

The answer states no confidence: its records carry `NAIVE_CONFIDENCE`, and a baseline run
reports no calibration (Brier and ECE are None) rather than numbers about a constant.
An answer that does not parse counts as finding nothing (the call and its tokens still
count), with the reason kept on the case as `warning`: a re-ask is what doxa adds. So do
events too long for the model's context in one prompt: that is the naive design's limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jinja2
from pydantic import BaseModel, Field, ValidationError, field_validator

from doxa.errors import ConfigError, ContextLengthError, ProviderError
from doxa.eval.fixtures import Case
from doxa.eval.match import Matcher, PredictedRecord
from doxa.eval.runfile import CaseResult
from doxa.events.parse import Event
from doxa.llm.client import LLMClient, UsageMeter
from doxa.llm.extractor import ExtractionSettings
from doxa.llm.provider_errors import provider_error
from doxa.llm.providers import Prompt
from doxa.model.records import EXTRACTED_KINDS
from doxa.resources import data_dir
from doxa.store import Store, open_store
from doxa.usage import Usage

if TYPE_CHECKING:
    from doxa.eval.runner import RunSettings

log = logging.getLogger(__name__)

NAME = "naive"
NAIVE_CONFIDENCE = 0.5
"""Every naive record's confidence: the answer has none, and 0.5 claims nothing either way."""
FALLBACK_KIND = "belief"
"""A kind outside belief/goal/preference is read as a belief: what the events show the
user thinks. Dropping it would be validation, which the baseline does not do."""


class NaiveFinding(BaseModel):
    """One thing the events show about the user."""

    kind: Literal["belief", "goal", "preference"]
    statement: str
    event_ids: list[str] = Field(default_factory=list)
    quote: str = ""

    @field_validator("kind", mode="before")
    @classmethod
    def _any_spelling(cls, value: Any) -> Any:
        """`Preferences`, ` Goal ` and the like are the kinds asked for, not errors."""
        if not isinstance(value, str):
            return value
        word = value.strip().casefold()
        word = word[:-1] if word.endswith("s") else word
        return word if word in EXTRACTED_KINDS else FALLBACK_KIND

    @field_validator("event_ids", mode="before")
    @classmethod
    def _ids_as_given(cls, value: Any) -> Any:
        """One id, or numbers, are ids as the model wrote them (whether they exist is not
        checked: that is doxa's validation)."""
        items = [value] if isinstance(value, str | int) else value
        if isinstance(items, list):
            return [str(item) if isinstance(item, int) else item for item in items]
        return items


class NaiveAnswer(BaseModel):
    """The beliefs, goals and preferences that the user's events show."""

    findings: list[NaiveFinding] = Field(default_factory=list)


ANSWER_VERSION = hashlib.sha256(
    json.dumps(NaiveAnswer.model_json_schema(), sort_keys=True).encode()).hexdigest()[:10]


def event_line(event: Event) -> str:
    """`id | time | type | text | properties`: one line, however the text was wrapped."""
    text = " ".join((event.text or "").split())
    properties = json.dumps(event.properties, ensure_ascii=False, sort_keys=True,
                            separators=(",", ":")) if event.properties else ""
    at = event.timestamp.isoformat().replace("+00:00", "Z")
    return " | ".join((event.id, at, event.type, text, properties))


def case_events(case: Case) -> list[Event]:
    """All the case's events, batch after batch: the baseline sees them at once."""
    return [event for batch in case.batches for event in batch]


@dataclass(frozen=True)
class NaivePrompt:
    """The one template, and its version: the folder's name and the hash of its text."""

    source: str
    version: str

    @classmethod
    def load(cls, folder: str | Path | None = None) -> NaivePrompt:
        path = Path(folder) if folder else data_dir("prompts") / NAME
        try:
            source = (path / "prompt.j2").read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"naive prompt folder {path} needs prompt.j2: {exc}") from exc
        digest = hashlib.sha256(source.encode()).hexdigest()[:10]
        return cls(source, f"{path.name}@{digest}")

    def render(self, events: Iterable[Event]) -> str:
        template = jinja2.Environment(undefined=jinja2.StrictUndefined,
                                      autoescape=False).from_string(self.source)
        return template.render(events=[event_line(e) for e in events]).strip()


class _Cached(BaseModel):
    answer: NaiveAnswer
    unparsed: str | None = None
    input_tokens: int | None = None
    """What the call cost when first asked (None in answers cached before it was kept)."""
    output_tokens: int | None = None


@dataclass
class _Call:
    """One answered call: the findings, why none if it did not parse, what it cost."""

    answer: NaiveAnswer
    unparsed: str | None = None
    usage: Usage = field(default_factory=Usage)


class NaiveBaseline:
    """Asks once per case and scores what comes back; one client and cache for the run."""

    name = NAME

    def __init__(self, llm: LLMClient, *, settings: ExtractionSettings | None = None,
                 cache: Store | None = None, prompt: NaivePrompt | None = None) -> None:
        self.llm = llm
        self.settings = settings or ExtractionSettings()
        self.cache = cache
        self.prompt = prompt or NaivePrompt.load()
        self.owns_client = False

    @classmethod
    def from_settings(cls, settings: RunSettings) -> NaiveBaseline:
        """The run's model, base URL, timeout and cache, as `doxa eval run` was given them."""
        extraction = (ExtractionSettings(timeout_s=settings.timeout_s) if settings.timeout_s
                      else ExtractionSettings())
        cache = (open_store(f"sqlite:///{Path(settings.cache_dir) / 'eval.db'}")
                 if settings.cache else None)
        baseline = cls(LLMClient.connect(settings.model, settings.base_url),
                       settings=extraction, cache=cache)
        baseline.owns_client = True
        return baseline

    @property
    def prompt_version(self) -> str:
        return self.prompt.version

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()
        if self.owns_client:
            await self.llm.close()

    async def run_case(self, case: Case, matcher: Matcher) -> CaseResult:
        """One call with every event, its findings as records, scored like doxa's."""
        from doxa.eval.runner import score_predicted

        started = time.perf_counter()
        call = await self.ask(case.user_id, self.prompt.render(case_events(case)))
        usage = self.llm.spec.priced(call.usage).model_copy(update={
            "latency_s": time.perf_counter() - started,
            "calling_batches": 0 if call.usage.cache_hits else 1, "reasks": 0})
        return await score_predicted(
            case, records_of(call.answer), matcher=matcher, usage=usage,
            prompt_version=self.prompt.version, baseline=self.name, warning=call.unparsed)

    def cache_key(self, prompt: str) -> str:
        spec = self.llm.spec
        payload = json.dumps([spec.label, spec.base_url or "",
                              self.settings.temperature, self.settings.max_tokens,
                              ANSWER_VERSION, prompt])
        return "n_" + hashlib.sha256(payload.encode()).hexdigest()

    async def ask(self, user_id: str, prompt: str) -> _Call:
        """The answer to the prompt, from the cache when allowed; retried like doxa's calls."""
        key = self.cache_key(prompt)
        if self.cache is not None and (hit := await self.cache.cache_get(key)) is not None:
            cached = _Cached.model_validate_json(hit)
            return _Call(cached.answer, cached.unparsed, Usage(
                cache_hits=1, cached_calls=1, cached_input_tokens=cached.input_tokens,
                cached_output_tokens=cached.output_tokens))
        call = _Call(NaiveAnswer())
        meter = self.llm.meter()
        try:
            await self.llm.call(lambda: self._ask_once(prompt, call, meter))
        except ContextLengthError as exc:
            # All events in one prompt is the naive design; when they do not fit, the
            # baseline finds nothing in this case (it is scored, not left out).
            reason = f"the events do not fit the model's context: {exc}"
            return _Call(NaiveAnswer(), reason, meter.total)
        call.usage = meter.total
        if self.cache is not None:
            await self.cache.cache_put(key, user_id, _Cached(
                answer=call.answer, unparsed=call.unparsed, input_tokens=call.usage.input_tokens,
                output_tokens=call.usage.output_tokens).model_dump_json())
        return call

    async def _ask_once(self, prompt: str, call: _Call, meter: UsageMeter) -> None:
        """One request, no re-ask: an answer that does not parse is an empty answer."""
        from instructor.v2.core.hooks import Hooks

        hooks = Hooks()
        hooks.on("completion:response", meter)
        try:
            call.answer = await self.llm.client.create(
                response_model=NaiveAnswer, max_retries=0, hooks=hooks, **self._request(prompt))
            call.unparsed = None
        except Exception as exc:
            if provider_error(exc) is not None:
                raise
            if isinstance(getattr(exc, "last_completion", None), str | bytes):
                raise ProviderError("provider answered a body that is not a completion "
                                    "(non-JSON)", retryable=True) from exc
            call.answer, call.unparsed = NaiveAnswer(), _reason(exc)
            log.info("naive answer did not parse: %s", call.unparsed)

    def _request(self, prompt: str) -> dict[str, Any]:
        return self.llm.request(Prompt(
            user=prompt, max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature, timeout_s=self.settings.timeout_s))


def records_of(answer: NaiveAnswer) -> tuple[PredictedRecord, ...]:
    """Findings as the eval's records, ids and quotes as given (the baseline checks nothing)."""
    return tuple(
        PredictedRecord(id=f"naive-{n}", kind=f.kind, statement=f.statement,
                        confidence=NAIVE_CONFIDENCE,
                        evidence=tuple(dict.fromkeys(str(e) for e in f.event_ids)))
        for n, f in enumerate(answer.findings, start=1))


def _reason(exc: BaseException) -> str:
    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, ValidationError):
            first = cur.errors()[0]
            return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        cur = cur.__cause__
    return f"{type(exc).__name__}: {str(exc)[:300]}"
