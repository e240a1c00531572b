"""The eval runner against a fake engine, the oracle through real merge, the run file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from doxa.errors import ConfigError, InvalidRunFileError
from doxa.eval.fixtures import Case, parse_case
from doxa.eval.runfile import read_run, write_run
from doxa.eval.runner import (
    RunSettings,
    default_engine_factory,
    run_case,
    run_cases,
    run_eval,
    run_oracle_case,
)
from doxa.events.parse import Event
from doxa.model.records import EvidenceLink, Record, UserModel

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def ev(eid: str, minute: int, text: str | None = None, day: int = 2) -> dict[str, Any]:
    event: dict[str, Any] = {"id": eid, "type": "chat_message" if text else "page_view",
                             "timestamp": f"2026-03-{day:02d}T10:{minute:02d}:00Z"}
    if text:
        event["text"] = text
    else:
        event["properties"] = {"path": "/pricing"}
    return event


CFO = "I need to show my CFO this pays back within 6 months"


def cfo_case(case_id: str = "cfo", **overrides: Any) -> Case:
    data: dict[str, Any] = {
        "id": case_id, "user_id": f"u-{case_id}",
        "batches": [[ev("e1", 0), ev("e4", 31, CFO)],
                    [ev("e5", 0, "We signed yesterday, the CFO approved it", day=9)]],
        "expected": [
            {"kind": "goal", "statement": "Get CFO approval by building a business case",
             "evidence": ["e4", "e5"], "status": "achieved", "context": "purchase_intent"},
        ],
        "forbidden": [{"kind": "belief", "statement": "The user wants a discount"}],
    }
    data.update(overrides)
    return parse_case(data)


def record(user_id: str, rid: str, kind: str, statement: str, event_ids: Sequence[str],
           confidence: float = 0.7, status: str = "active") -> Record:
    links = tuple(EvidenceLink(event_id=e, observed_at=T0) for e in event_ids)
    return Record(id=rid, user_id=user_id, kind=kind, statement=statement,
                  confidence=confidence, evidence=links, status=status, valid_from=T0,
                  created_at=T0, updated_at=T0)


class FakeEngine:
    """Ingest turns scripted event ids into records; reports usage like IngestResult."""

    prompt_version = "p-test"

    def __init__(self, script: dict[str, tuple[str, str, str]], fail: bool = False) -> None:
        self.script = script
        self.fail = fail
        self.ingested: list[tuple[str, list[str]]] = []
        self.records: dict[str, Record] = {}
        self.closed = False

    async def ingest(self, user_id: str, events: list[Event]) -> Any:
        if self.fail:
            raise RuntimeError("provider exploded")
        self.ingested.append((user_id, [e.id for e in events]))
        for e in events:
            if e.id in self.script:
                rid, kind, statement = self.script[e.id]
                old = self.records.get(rid)
                ids = [*(old.evidence_ids() if old else ()), e.id]
                self.records[rid] = record(user_id, rid, kind, statement, sorted(ids))
        return SimpleNamespace(llm_calls=1, input_tokens=100, output_tokens=20,
                               cost_usd=0.001, cache_hits=0, dropped=["x"])

    async def model(self, user_id: str) -> UserModel:
        return UserModel(user_id=user_id, records=tuple(self.records.values()))

    async def close(self) -> None:
        self.closed = True


async def test_run_case_ingests_each_batch_in_order_then_scores_the_final_model() -> None:
    engine = FakeEngine({"e4": ("r1", "goal", "Get CFO approval by building a business case"),
                         "e5": ("r2", "belief", "Believes the user wants a discount")})
    result = await run_case(cfo_case(), lambda case_id: engine)
    assert engine.ingested == [("u-cfo", ["e1", "e4"]), ("u-cfo", ["e5"])]
    assert engine.closed
    assert result.prompt_version == "p-test" and result.error is None
    assert (result.usage.llm_calls, result.usage.input_tokens, result.usage.output_tokens,
            result.usage.dropped) == (2, 200, 40, 2)
    assert result.usage.cost_usd == pytest.approx(0.002)
    # The goal stayed active, so it cannot match the achieved label: status accuracy says why.
    assert result.matching.pairs == ()
    assert [(s.predicted_status, s.expected_status) for s in result.matching.status_pairs] == [
        ("active", "achieved")]
    assert result.metrics is not None and result.metrics.status_correct == 0
    assert result.metrics.forbidden_violations == 1


async def test_a_failing_case_is_recorded_and_the_others_go_on() -> None:
    engines = {"ok": FakeEngine({}), "bad": FakeEngine({}, fail=True)}
    results = await run_cases(
        [cfo_case("ok"), cfo_case("bad")],
        lambda case: run_case(case, lambda case_id: engines[case_id]))
    assert [r.case_id for r in results] == ["ok", "bad"]
    assert results[0].error is None
    assert results[1].error == "RuntimeError: provider exploded" and results[1].metrics is None
    assert engines["bad"].closed


async def test_errors_that_would_fail_every_case_stop_the_run() -> None:
    async def no_key(case: Case) -> Any:
        raise ConfigError("openai/gpt-4o-mini needs OPENAI_API_KEY")

    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        await run_cases([cfo_case()], no_key)


async def test_cases_run_concurrently_up_to_the_limit() -> None:
    running = peak = 0

    async def slow(case: Case) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return await run_oracle_case(case)

    done: list[str] = []
    results = await run_cases([cfo_case(f"c{i}") for i in range(6)], slow, concurrency=2,
                              on_done=lambda r: done.append(r.case_id))
    assert peak == 2 and len(results) == 6 and sorted(done) == [f"c{i}" for i in range(6)]


async def test_oracle_feeds_the_labels_through_merge() -> None:
    case = parse_case({
        "id": "switch", "user_id": "u-switch",
        "batches": [[ev("e1", 1, "We track everything in Excel today"),
                     ev("e2", 2, "I want to get the team onto one tool")],
                    [ev("e3", 1, "We moved off Excel, everything is in Airtable now", day=5),
                     ev("e4", 2, "Done: the whole team uses one tool now", day=5)]],
        "expected": [
            {"kind": "belief", "statement": "Tracks work in Excel", "evidence": ["e1"],
             "status": "superseded", "context": "tooling"},
            {"kind": "belief", "statement": "Tracks work in Airtable", "evidence": ["e3"],
             "context": "tooling"},
            {"kind": "goal", "statement": "Get the team onto one tool",
             "evidence": ["e2", "e4"], "status": "achieved"},
        ]})
    result = await run_oracle_case(case)
    assert result.prompt_version == "oracle" and result.usage.llm_calls == 0
    by_statement = {p.statement: p for p in result.predicted}
    assert by_statement["Tracks work in Excel"].status == "superseded"
    assert by_statement["Get the team onto one tool"].status == "achieved"
    assert by_statement["Get the team onto one tool"].evidence == ("e2", "e4")
    assert result.metrics is not None
    assert result.metrics.overall.f1 == 1.0 and result.metrics.evidence.f1 == 1.0
    assert (result.metrics.status_total, result.metrics.status_correct) == (3, 3)
    assert all(0.0 < p.confidence < 1.0 for p in result.predicted)


async def test_run_eval_writes_a_run_file_that_reads_back(tmp_path: Path) -> None:
    engines: list[FakeEngine] = []

    def factory(case_id: str) -> FakeEngine:
        engines.append(FakeEngine({"e4": ("r1", "goal", "Get CFO approval for a business case")}))
        return engines[-1]

    settings = RunSettings(suite="fixtures/eval", model="openai/gpt-4o-mini", concurrency=2)
    run = await run_eval(settings, [cfo_case("a"), cfo_case("b")], engine_factory=factory)
    assert len(engines) == 2  # a fresh engine per case
    assert (run.model, run.prompt_version, run.matcher, run.oracle) == (
        "openai/gpt-4o-mini", "p-test", "lexical", False)
    assert run.metrics.cases == 2 and run.usage.llm_calls == 4
    assert run.finished_at >= run.started_at
    path = write_run(run, tmp_path / "runs" / "a.json")
    assert read_run(path) == run


def test_unreadable_run_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRunFileError, match="does not exist"):
        read_run(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(InvalidRunFileError, match="not a doxa eval run"):
        read_run(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"format": "doxa-eval-run",
                                                 "format_version": 99}))
    with pytest.raises(InvalidRunFileError, match="newer doxa"):
        read_run(tmp_path / "y.json")


async def test_real_engines_cache_llm_answers_across_runs(tmp_path: Path) -> None:
    """The default factory against the loopback fake provider: the second run is free."""
    pytest.importorskip("aiohttp")
    from doxa.testing.fake_provider import FakeProvider

    provider = await FakeProvider().start()
    try:
        factory = default_engine_factory("openai/fake-model", base_url=provider.base_url,
                                         cache_path=tmp_path / "eval.db")
        first = await run_case(cfo_case(), factory)
        second = await run_case(cfo_case(), factory)
    finally:
        await provider.stop()
    # Two batches, one call each (the fake answers validly); each is paid for only once.
    assert first.error is None and first.usage.llm_calls == 2 and first.usage.cache_hits == 0
    assert first.usage.input_tokens > 0 and first.prompt_version.startswith("extract@")
    assert (second.usage.llm_calls, second.usage.cache_hits, second.usage.input_tokens) == (
        0, 2, 0)
    assert [p.statement for p in second.predicted] == [p.statement for p in first.predicted]
    assert provider.stats.answered == first.usage.llm_calls
