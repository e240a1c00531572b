"""Engine behaviour that needs no LLM answer at all: the ledger, low-signal batches, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from doxa.engine import Engine, Prepared
from doxa.errors import InvalidEventError, InvalidEventsError
from doxa.model.records import Record

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


async def seed_belief(store: Any) -> Record:
    """Store one belief for u1, citing event e1 (version 1), and return it."""
    from builders import batch, chat, said
    from doxa.core.merge import merge

    b = batch(chat("e1", "Is there an ROI calculator?"))
    seeded = merge(await store.load("u1"), [said("belief", "Believes ROI proof matters",
                                                 "e1")], b, now=T0, prompt_version="p")
    await store.commit(seeded.model, expected_version=0, changes=seeded.changes,
                       events=list(b.events.values()), processed_ids=["e1"])
    [belief] = (await store.load("u1")).beliefs()
    return belief


async def test_record_outcome_is_evidence_stored_once_in_the_ledger() -> None:
    engine = Engine(store="memory://", client=NoCalls())
    belief = await seed_belief(engine.store)
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


# -- the engine as a resource, its settings as one value, one commit-retry loop ----------------


class ClosingStore:
    """A memory store that records being closed and can lose every commit race."""

    def __init__(self, *, always_conflict: bool = False) -> None:
        from doxa.store.memory import MemoryStore

        self.inner = MemoryStore()
        self.always_conflict = always_conflict
        self.closed = False
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, model: Any, *, expected_version: int, **kwargs: Any) -> int:
        from doxa.errors import StoreConflictError

        self.commits += 1
        if self.always_conflict:  # another writer always got there first
            raise StoreConflictError(model.user_id, expected_version, expected_version + 1)
        return int(await self.inner.commit(model, expected_version=expected_version, **kwargs))

    async def close(self) -> None:
        self.closed = True


async def test_async_with_closes_the_engine_even_when_the_block_fails() -> None:
    store = ClosingStore()
    async with Engine(store=store, client=NoCalls()) as engine:  # type: ignore[arg-type]
        assert (await engine.ingest("u1", noise(2))).batches == 1
    assert store.closed
    failing = ClosingStore()
    with pytest.raises(RuntimeError, match="boom"):
        async with Engine(store=failing, client=NoCalls()):  # type: ignore[arg-type]
            raise RuntimeError("boom")
    assert failing.closed


def test_with_closes_an_engine_used_through_the_sync_wrappers() -> None:
    store = ClosingStore()
    with Engine(store=store, client=NoCalls()) as engine:  # type: ignore[arg-type]
        assert engine.ingest_sync("u1", noise(2)).batches == 1
    assert store.closed


def test_engine_config_and_the_old_keywords_are_the_same_settings() -> None:
    from dataclasses import fields
    from typing import get_type_hints

    from doxa.core.merge import MergeConfig
    from doxa.engine import EngineConfig, EngineOptions
    from doxa.relevance import RelevanceConfig

    merging = MergeConfig(max_records_per_kind=7)
    by_keyword = Engine(store="memory://", rpm=60, max_context_records=3,
                        merge_config=merging, relevance=RelevanceConfig(max_events=2))
    by_config = Engine(store="memory://", config=EngineConfig(
        rpm=60, max_context_records=3, merge_config=merging,
        relevance=RelevanceConfig(max_events=2)))
    assert by_keyword.config == by_config.config
    assert by_config.merge_config is merging and by_config.max_context_records == 3
    assert by_config.relevance.max_events == 2 and by_config.limiter.rpm == 60
    # A keyword given with a config replaces that one field; None still means the default.
    both = Engine(store="memory://", config=EngineConfig(rpm=60, tpm=1000), rpm=30,
                  relevance=None)
    assert (both.config.rpm, both.config.tpm) == (30, 1000)
    assert both.relevance == RelevanceConfig()
    # The typed keywords are exactly the config's fields.
    assert get_type_hints(EngineOptions) == {
        f.name: get_type_hints(EngineConfig)[f.name] for f in fields(EngineConfig)}
    with pytest.raises(TypeError, match="rmp"):
        Engine(store="memory://", rmp=60)  # type: ignore[call-arg]
    assert "sk-secret" not in repr(EngineConfig(api_key="sk-secret"))


async def test_a_commit_that_loses_every_race_raises_with_the_versions_it_met() -> None:
    """Ingest and outcomes share one retry loop: a bounded number of attempts, then the
    store's own conflict (the versions it expected and found), never a made-up one."""
    from doxa.engine import COMMIT_ATTEMPTS
    from doxa.errors import StoreConflictError

    store = ClosingStore(always_conflict=True)
    engine = Engine(store=store, client=NoCalls())  # type: ignore[arg-type]
    with pytest.raises(StoreConflictError) as ingesting:
        await engine.ingest("u1", noise(2))
    assert store.commits == COMMIT_ATTEMPTS
    assert (ingesting.value.expected_version, ingesting.value.found_version) == (0, 1)

    belief = await seed_belief(store.inner)
    store.commits = 0
    with pytest.raises(StoreConflictError) as recording:
        await engine.record_outcome("u1", belief.id, "ignored", at=T0, event_id="o1")
    assert store.commits == COMMIT_ATTEMPTS
    assert (recording.value.expected_version, recording.value.found_version) == (1, 2)


async def test_prepare_and_apply_carry_a_batch_answered_elsewhere() -> None:
    """The batch-API transport's half of the pipeline: prepare renders the next batch with
    signal against the stored model (the ones before it need no LLM), apply validates the
    provider's answer as online and commits it; an answer that does not parse stores nothing."""
    from openai.types.chat import ChatCompletion

    from doxa.errors import ExtractionValidationError
    from doxa.relevance import RelevanceConfig
    from doxa.testing.fake_provider import _openai_body

    # Page views weigh too little for a call: the first batch has no signal.
    engine = Engine(model="openai/fake", store="memory://", base_url="http://127.0.0.1:9/v1",
                    api_key="x", relevance=RelevanceConfig(max_events=2,
                                                           weights={"page_view": 0.2}))
    viewed = [{"id": f"n{i}", "type": "page_view", "timestamp": T0 + timedelta(seconds=i),
               "properties": {"path": f"/p{i}"}} for i in range(2)]
    said = [{"id": f"c{i}", "type": "chat_message", "timestamp": T0 + timedelta(hours=i),
             "text": text} for i, text in enumerate(["We need SSO before the security review",
                                                     "Please keep replies short"], start=1)]
    events = [*viewed, *said]
    prepared = await engine.prepare("u1", events)
    [quiet] = prepared.without_signal
    request = prepared.request
    assert not quiet.has_signal and request is not None and request.batch.has_signal
    assert request.known_record_ids == frozenset() and request.body["model"] == "fake"
    assert "We need SSO" in request.body["messages"][1]["content"]
    assert await engine.store.processed("u1", ["n0", "c1"]) == set()  # prepare writes nothing

    assert (await engine.apply(quiet, None)).batches_without_signal == 1
    garbage = ChatCompletion.model_validate(_openai_body({"records": "nope"}, 10, 2))
    with pytest.raises(ExtractionValidationError):
        await engine.apply(request.batch, garbage, known_record_ids=request.known_record_ids)
    assert await engine.store.processed("u1", ["c1", "c2"]) == set()

    answer = ChatCompletion.model_validate(_openai_body({"notes": "", "records": [
        {"kind": "goal", "statement": "Wants to have SSO before the security review",
         "context": "security", "basis": "explicit", "evidence": [{"event_id": "c1"}]}]},
        100, 20))
    result = await engine.apply(request.batch, answer,
                                known_record_ids=request.known_record_ids)
    assert (result.input_tokens, result.output_tokens, len(result.changes)) == (100, 20, 1)
    assert await engine.pending_batches("u1", events) == []
    [goal] = (await engine.model("u1")).goals()
    assert goal.statement == "Wants to have SSO before the security review"
    assert (await engine.prepare("u1", events)) == Prepared((), None)
