"""The whole path against recorded real-model traffic (tests/cassettes/, replayed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doxa.events.parse import load_file

pytestmark = pytest.mark.recorded

# The events these cassettes were recorded with (the demo's own, fixtures/demo/, has moved on).
DEMO = Path(__file__).parent / "data" / "demo-events-recorded.jsonl"
PROMPTS = Path(__file__).parent / "prompts"
RecordedEngine = Any  # the conftest fixture: async context manager factory


async def test_demo_events_become_records_with_evidence_and_reingest_changes_nothing(
    recorded_engine: RecordedEngine,
) -> None:
    events = load_file(DEMO).events
    async with recorded_engine("engine_demo") as engine:
        first = await engine.ingest("demo-user", events)
        model = await engine.model("demo-user")
        again = await engine.ingest("demo-user", events)
        assert await engine.model("demo-user") == model
    assert first.llm_calls >= 1 and first.input_tokens > 0 and first.output_tokens > 0
    assert again.llm_calls == 0 and again.events_new == 0 and again.changes == []
    assert len(model.active()) >= 2
    shown = {e.id for e in events if e.type not in {"heartbeat", "scroll"}}
    for record in model.records:
        assert 0.0 < record.confidence < 1.0
        assert record.evidence and {e.event_id for e in record.evidence} <= shown
        assert record.prompt_version == engine.prompt_version
        assert model.explain(record.id).evidence[0].event is not None


async def test_evidence_outside_the_batch_is_reasked_and_dropped_when_still_wrong(
    recorded_engine: RecordedEngine,
) -> None:
    events = load_file(DEMO).events
    async with recorded_engine("engine_cite_missing",
                               prompt_dir=PROMPTS / "cite_missing") as engine:
        result = await engine.ingest("demo-user", events)
        model = await engine.model("demo-user")
    # The prompt makes the model cite ids the batch does not hold ("evt-4"). A quote found
    # in exactly one of the user's events is moved there without a call; what cannot be
    # mended is re-asked (only the failing records, with the events that could show them),
    # and whatever the model does then, nothing cites an event outside the batch. (With the
    # recorded Qwen 1.5B every citation was mended from its quote; a model that insists on
    # a wrong id after the re-asks is dropped, with the reason.)
    assert result.repairs + result.reasks >= 1
    assert result.llm_calls == 1 + result.reasks
    for dropped in result.dropped:
        assert "is not in this batch; valid ids are d01" in " ".join(dropped.reasons)
    cited = {e.event_id for r in model.records for e in r.evidence}
    assert cited <= {e.id for e in events}
