"""Running cases: ingest each batch through an engine, read the final model, match, score.

The runner knows engines only through `EngineLike` (ingest, model, close), made per case by
an `EngineFactory`, so tests drive it with a fake and `doxa eval run` with the real Engine.
Oracle mode skips the LLM: the expected records go through `doxa.core.merge.merge` as if
extracted, so merge and confidence are scored on their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from doxa.errors import ConfigError, ProviderAuthError
from doxa.eval.baselines import Baseline, check_baseline, make_baseline
from doxa.eval.fixtures import Case
from doxa.eval.match import LexicalMatcher, Matcher, PredictedRecord, make_matcher, match_case
from doxa.eval.metrics import case_metrics, suite_metrics
from doxa.eval.oracle import oracle_model
from doxa.eval.runfile import CaseResult, RunFile, stamp
from doxa.events.parse import Event
from doxa.model.records import Record, UserModel
from doxa.usage import Usage, total_usage

log = logging.getLogger(__name__)

FATAL = (ConfigError, ProviderAuthError)
"""Errors that would fail every case the same way: they stop the run instead."""


class EngineLike(Protocol):
    """What the runner needs of an engine (doxa.engine.Engine has it)."""

    async def ingest(self, user_id: str, events: list[Event]) -> Any:
        """Ingest one batch of the case's events for the user."""

    async def model(self, user_id: str) -> UserModel:
        """The user's model after every batch."""

    async def close(self) -> None:
        """Release the engine's store and HTTP client."""


EngineFactory = Callable[[str], EngineLike]
"""case id → a fresh engine whose store holds nothing of that case yet."""
CaseRunner = Callable[[Case], Awaitable[CaseResult]]
OnDone = Callable[[CaseResult], None]


def usage_of(result: Any, latency_s: float) -> Usage:
    """Usage from an ingest result, by attribute, so any engine's result will do.

    Calling batches are the batches with signal not answered from the cache; each makes one
    call, so the calls beyond that are re-asks (an engine that counts its re-asks itself,
    as `reasks`, is taken at its word). A result without batch counts leaves both None."""
    cost = getattr(result, "cost_usd", 0.0)
    calls, hits = int(getattr(result, "llm_calls", 0)), int(getattr(result, "cache_hits", 0))
    calling = reasks = None
    if isinstance(batches := getattr(result, "batches", None), int):
        calling = max(0, batches - int(getattr(result, "batches_without_signal", 0)) - hits)
        counted = getattr(result, "reasks", None)
        reasks = counted if isinstance(counted, int) else max(0, calls - calling)
    return Usage(
        llm_calls=calls,
        input_tokens=int(getattr(result, "input_tokens", 0)),
        output_tokens=int(getattr(result, "output_tokens", 0)),
        cost_usd=None if cost is None else float(cost),
        cache_hits=hits,
        latency_s=latency_s,
        dropped=len(getattr(result, "dropped", None) or ()),
        calling_batches=calling, reasks=reasks,
        repairs=_counted(result, "repairs"),
        reask_input_tokens=_counted(result, "reask_input_tokens"),
        reask_output_tokens=_counted(result, "reask_output_tokens"),
        why_calls=_counted(result, "why_calls"),
        why_input_tokens=_counted(result, "why_input_tokens"),
        why_output_tokens=_counted(result, "why_output_tokens"),
        cached_calls=_counted(result, "cached_calls"),
        cached_input_tokens=_counted(result, "cached_input_tokens"),
        cached_output_tokens=_counted(result, "cached_output_tokens"),
    )


def _counted(result: Any, name: str) -> int | None:
    """A count an engine's result keeps, or None when it keeps no such count."""
    value = getattr(result, name, None)
    return value if isinstance(value, int) else None


async def score_case(case: Case, records: Sequence[Record], *, matcher: Matcher,
                     usage: Usage | None = None, prompt_version: str = "",
                     events: Mapping[str, Event] | None = None) -> CaseResult:
    """Match the final model's records against the case's labels and score them; with the
    model's `events`, each record's calibration features go into the run file too."""
    return await score_predicted(
        case, tuple(PredictedRecord.from_record(r, events) for r in records),
        matcher=matcher, usage=usage, prompt_version=prompt_version)


async def score_predicted(case: Case, predicted: tuple[PredictedRecord, ...], *,
                          matcher: Matcher, usage: Usage | None = None,
                          prompt_version: str = "", baseline: str | None = None,
                          warning: str | None = None) -> CaseResult:
    """Score records however they were obtained: doxa's final model or a baseline's answer."""
    matching = await match_case(predicted, case.expected, case.forbidden, matcher)
    result = CaseResult(
        case_id=case.id, description=case.description, path=case.path, user_id=case.user_id,
        batches=len(case.batches), prompt_version=prompt_version, predicted=predicted,
        expected=case.expected, forbidden=case.forbidden, links=case.links, matching=matching,
        usage=usage or Usage(), baseline=baseline, warning=warning,
    )
    return result.model_copy(update={"metrics": case_metrics(result.scored())})


async def run_case(case: Case, engine_factory: EngineFactory, *,
                   matcher: Matcher | None = None) -> CaseResult:
    """One ingest per batch, in order, into a fresh engine; then score its final model."""
    usage = Usage()
    async with _closing(engine_factory(case.id)) as engine:
        for batch in case.batches:
            started = time.perf_counter()
            result = await engine.ingest(case.user_id, list(batch))
            usage = usage + usage_of(result, time.perf_counter() - started)
        model = await engine.model(case.user_id)
        prompt_version = str(getattr(engine, "prompt_version", ""))
    return await score_case(case, model.records, matcher=matcher or LexicalMatcher(),
                            usage=usage, prompt_version=prompt_version, events=model.events)


@asynccontextmanager
async def _closing(engine: EngineLike) -> AsyncIterator[EngineLike]:
    """`async with` over any `EngineLike` (an `Engine` is its own context manager; a test's
    fake need only have `close`): closed however the case ends."""
    try:
        yield engine
    finally:
        await engine.close()


async def run_oracle_case(case: Case, *, matcher: Matcher | None = None) -> CaseResult:
    """Score merge and confidence alone: the labels go through merge as if extracted."""
    model = oracle_model(case)
    return await score_case(case, model.records, matcher=matcher or LexicalMatcher(),
                            prompt_version="oracle")


def failed(case: Case, exc: BaseException) -> CaseResult:
    return CaseResult(case_id=case.id, description=case.description, path=case.path,
                      user_id=case.user_id, batches=len(case.batches), expected=case.expected,
                      forbidden=case.forbidden, error=f"{type(exc).__name__}: {exc}")


async def run_cases(cases: Sequence[Case], run_one: CaseRunner, *, concurrency: int = 4,
                    on_done: OnDone | None = None) -> list[CaseResult]:
    """Run cases concurrently (bounded), in suite order; a failing case is recorded, not fatal.

    `ConfigError` and `ProviderAuthError` would fail every case alike, so they stop the run.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(case: Case) -> CaseResult:
        async with gate:
            try:
                result = await run_one(case)
            except FATAL:
                raise
            except Exception as exc:  # reported in the run file; other cases go on
                log.warning("case %s failed: %s", case.id, exc, exc_info=True)
                result = failed(case, exc)
        if on_done is not None:
            on_done(result)
        return result

    return list(await asyncio.gather(*(one(c) for c in cases)))


def default_engine_factory(
    model: str, *, base_url: str | None = None, prompt_dir: str | Path | None = None,
    cache: bool = True, cache_path: str | Path = ".doxa-cache/eval.db",
    timeout_s: float | None = None, schema: str | Path | None = None,
    calibration: str | Path | None = None, why: bool = False,
) -> EngineFactory:
    """Real engines: a memory store per case, LLM answers cached in one sqlite file. No
    calibration profile unless one is given: a profile found by model and prompt version
    may have been fitted on these very cases."""

    def make(case_id: str) -> EngineLike:
        from doxa.engine import Engine  # lazily: the eval package imports without the engine

        log.debug("engine for case %s", case_id)
        from doxa.llm.extractor import ExtractionSettings

        engine: EngineLike = Engine(
            model=model, store="memory://", base_url=base_url, prompt_dir=prompt_dir,
            cache=cache, cache_store=f"sqlite:///{cache_path}" if cache else None,
            settings=ExtractionSettings(timeout_s=timeout_s) if timeout_s else None,
            schema=schema, calibration=calibration if calibration is not None else False,
            why=why,
        )
        return engine

    return make


class RunSettings(BaseModel):
    """What `doxa eval run` was asked to do; recorded in the run file."""

    model_config = ConfigDict(frozen=True)

    suite: str
    model: str = "openai/gpt-4o-mini"
    base_url: str | None = None
    prompt_dir: str | None = None
    matcher: str = "lexical"
    judge_model: str | None = None
    concurrency: int = 4
    cache: bool = True
    cache_dir: str = ".doxa-cache"
    oracle: bool = False
    timeout_s: float | None = None
    schema_file: str | None = None
    """A model schema file: extraction is schema-shaped, and value accuracy means something."""
    baseline: str | None = None
    """A built-in baseline (`naive`) answers the cases instead of doxa."""
    calibration: str | None = None
    """A calibration profile file the engine reads confidences through (None: none)."""
    why: bool = False
    """Run the why pass after each batch that yields a goal, so extraction proposes causal
    links (scored by link P/R/F1 on cases that label them)."""


def _case_runner(settings: RunSettings, matcher: Matcher,
                 engine_factory: EngineFactory | None) -> CaseRunner:
    if settings.oracle:
        return lambda case: run_oracle_case(case, matcher=matcher)
    factory = engine_factory or default_engine_factory(
        settings.model, base_url=settings.base_url, prompt_dir=settings.prompt_dir,
        cache=settings.cache, cache_path=Path(settings.cache_dir) / "eval.db",
        timeout_s=settings.timeout_s, schema=settings.schema_file,
        calibration=settings.calibration, why=settings.why)
    return lambda case: run_case(case, factory, matcher=matcher)


def _baseline_runner(baseline: Baseline, matcher: Matcher) -> CaseRunner:
    return lambda case: baseline.run_case(case, matcher)


async def run_eval(settings: RunSettings, cases: Sequence[Case], *,
                   engine_factory: EngineFactory | None = None, matcher: Matcher | None = None,
                   on_done: OnDone | None = None) -> RunFile:
    """Run every case, score the suite, and return the run file's content."""
    from doxa import __version__

    check_baseline(settings)
    _check_out_of_sample(settings, cases)
    own = matcher is None
    matcher = matcher or make_matcher(
        settings.matcher, judge_model=settings.judge_model or settings.model,
        base_url=settings.base_url, cache_dir=settings.cache_dir if settings.cache else None)
    started = stamp()
    baseline = make_baseline(settings) if settings.baseline else None
    try:
        run_one = (_baseline_runner(baseline, matcher) if baseline is not None
                   else _case_runner(settings, matcher, engine_factory))
        results = await run_cases(cases, run_one, concurrency=settings.concurrency,
                                  on_done=on_done)
    finally:
        if baseline is not None:
            await baseline.close()
        if own and callable(close := getattr(matcher, "close", None)):
            close()
    ran = [r for r in results if r.error is None]
    versions = sorted({r.prompt_version for r in ran if r.prompt_version})
    return RunFile(
        doxa_version=__version__, suite=settings.suite,
        model="oracle" if settings.oracle else settings.model,
        prompt_version=",".join(versions), why_prompt_version=_why_version(settings),
        matcher=matcher.name, oracle=settings.oracle,
        baseline=settings.baseline,
        started_at=started, finished_at=stamp(), cases=tuple(results),
        metrics=suite_metrics([r.scored() for r in ran], errored=len(results) - len(ran),
                              closed_dimensions=_closed_dimensions(settings.schema_file)),
        usage=total_usage([r.usage for r in results]),
        judge_usage=dict(getattr(matcher, "stats", {})),
    )


def _why_version(settings: RunSettings) -> str | None:
    """The why prompt's version when doxa's engines ran the why pass, else None."""
    if not settings.why or settings.oracle or settings.baseline:
        return None
    from doxa.prompts.why import WhyPrompt

    return WhyPrompt(new_records=settings.schema_file is None).version


def _check_out_of_sample(settings: RunSettings, cases: Sequence[Case]) -> None:
    """Refuse to score a calibration profile on the cases it was fitted on: its figures
    there say nothing (its cross-validated ones are in the profile)."""
    if settings.calibration is None:
        return
    from doxa.calibration.profile import read_profile

    profile = read_profile(settings.calibration)
    seen = set(profile.fitted_on.case_ids) & {c.id for c in cases}
    if seen:
        raise ConfigError(
            f"calibration profile {settings.calibration} was fitted on {len(seen)} of these "
            f"cases ({', '.join(sorted(seen)[:3])}{'...' if len(seen) > 3 else ''}): scored "
            "here it would be in-sample; its cross-validated figures are in the profile "
            "(`doxa eval calibrate` prints them)")


def _closed_dimensions(schema_file: str | None) -> frozenset[str]:
    """The dimensions with listed values in the run's schema (none without one)."""
    if schema_file is None:
        return frozenset()
    from doxa.model.schema import load_schema

    return frozenset(d.name for d in load_schema(schema_file).dimensions if d.values)
