"""Engine behaviour that needs no LLM answer at all: the ledger, low-signal batches, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.errors import InvalidEventError, InvalidEventsError

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class NoCalls:
    """A client that fails the test if extraction ever reaches the LLM."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the LLM client was used ({name})")


def noise(n: int) -> list[dict[str, Any]]:
    kinds = ["heartbeat", "scroll", "session_ping", "mouse_move"]
    return [{"id": f"n{i}", "type": kinds[i % 4], "timestamp": T0 + timedelta(seconds=i)}
            for i in range(n)]


async def test_a_batch_of_only_low_signal_events_makes_no_llm_call_and_is_processed() -> None:
    engine = Engine(store="memory://", client=NoCalls())
    result = await engine.ingest("u1", noise(12))
    assert (result.llm_calls, result.batches, result.batches_without_signal) == (0, 1, 1)
    assert await engine.store.processed("u1", ["n0", "n11"]) == {"n0", "n11"}
    again = await engine.ingest("u1", noise(12))
    assert again.events_new == 0 and again.batches == 0


async def test_invalid_input_raises_a_typed_error_naming_the_index_and_writes_nothing() -> None:
    engine = Engine(store="memory://", client=NoCalls())
    events = [*noise(3), {"id": "bad", "type": "chat_message", "timestamp": "2026-03-02T10:00"}]
    with pytest.raises(InvalidEventsError) as exc:
        await engine.ingest("u1", events)
    assert (exc.value.errors[0].index, exc.value.errors[0].field) == (3, "timestamp")
    assert await engine.store.processed("u1", ["n0"]) == set()


async def test_events_of_another_user_are_refused() -> None:
    engine = Engine(store="memory://", client=NoCalls())
    with pytest.raises(InvalidEventError, match="belongs to user 'u2'"):
        await engine.ingest("u1", [{**noise(1)[0], "user_id": "u2"}])


def test_sync_wrappers_work_without_an_event_loop() -> None:
    engine = Engine(store="memory://", client=NoCalls())
    result = engine.ingest_sync("u1", noise(2))
    assert result.llm_calls == 0
    assert len(engine.model_sync("u1")) == 0
    engine.close_sync()


def test_reading_a_model_needs_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    engine = Engine(model="openai/gpt-4o-mini", store="memory://")
    assert engine.model_sync("nobody").is_cold()
    engine.close_sync()


async def test_record_outcome_is_evidence_stored_once_in_the_ledger() -> None:
    from builders import batch, chat, said
    from doxa.core.merge import merge

    engine = Engine(store="memory://", client=NoCalls())
    b = batch(chat("e1", "Is there an ROI calculator?"))
    seeded = merge(await engine.model("u1"), [said("belief", "Believes ROI proof matters",
                                                   "e1")], b, now=T0, prompt_version="p")
    await engine.store.commit(seeded.model, expected_version=0, changes=seeded.changes,
                              events=list(b.events.values()), processed_ids=["e1"])
    [belief] = (await engine.model("u1")).beliefs()
    changes = await engine.record_outcome("u1", belief.id, "ignored", at=T0, event_id="o1")
    assert changes[0].confidence_after < belief.confidence
    assert await engine.record_outcome("u1", belief.id, "ignored", at=T0, event_id="o1") == []
    explained = (await engine.model("u1")).explain(belief.id)
    assert [e.link.event_id for e in explained.evidence] == ["e1", "o1"]
    assert explained.evidence[1].event is not None and explained.evidence[1].event.type == "outcome"


async def test_ingest_many_without_kept_results_returns_only_failures() -> None:
    """`doxa ingest` totals results as they arrive; holding every result would grow
    memory with the file. Failures are always returned, successes reach `on_done`."""
    engine = Engine(store="memory://", client=NoCalls())
    bad = [{"id": "x", "type": "chat_message", "timestamp": "2026-03-02T10:00"}]  # naive time
    seen: dict[str, Any] = {}
    users = [("u1", noise(3)), ("u2", bad), ("u3", noise(5))]
    failures = await engine.ingest_many(users, keep_results=False,
                                        on_done=lambda u, r: seen.setdefault(u, r))
    assert list(failures) == ["u2"] and isinstance(failures["u2"], InvalidEventsError)
    assert sorted(seen) == ["u1", "u2", "u3"]
    kept = await engine.ingest_many([("u4", noise(2))])
    assert kept["u4"].batches == 1  # type: ignore[union-attr]
