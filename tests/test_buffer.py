"""Buffered ingestion: `Engine.add` keeps events durably per user until the flush policy
says they are worth a call; a flush extracts them once, commits their removal with their
extraction, and never lets an event be merged twice or a deleted user come back."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from doxa.cli.main import app
from doxa.core.flush import BufferSummary, FlushPolicy
from doxa.engine import Engine
from doxa.errors import InvalidEventError, InvalidEventsError
from doxa.events.fields import tenant_scoped_user_ids
from doxa.llm.client import RetryPolicy
from doxa.model.records import UserModel
from doxa.store import Store, open_store
from doxa.testing.fake_provider import FakeProvider, events_in, serving_in_thread

PG_URL = os.environ.get("DOXA_TEST_POSTGRES_URL")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def said(event_id: str, text: str, user: str = "u1", minute: int = 0,
         kind: str = "chat_message") -> dict[str, Any]:
    return {"id": event_id, "user_id": user, "type": kind, "text": text,
            "timestamp": (T0 + timedelta(minutes=minute)).isoformat()}


def viewed(event_id: str, user: str = "u1", minute: int = 0) -> dict[str, Any]:
    return {"id": event_id, "user_id": user, "type": "page_view",
            "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
            "properties": {"path": "/pricing"}}


class Clock:
    """The engine's clock, moved by the test: arrivals and waits without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider(keep_bodies=True).start()
    yield provider
    await provider.stop()


def engine_on(store: Store, fake: FakeProvider, clock: Clock, **options: Any) -> Engine:
    return Engine(model="openai/fake", store=store, base_url=fake.base_url, api_key="x",
                  clock=clock, **options)


# -- the policy, pure --------------------------------------------------------------------

def summary(events: int = 1, tokens: int = 0, high: int = 0,
            oldest: datetime | None = T0) -> BufferSummary:
    return BufferSummary(user_id="u", events=events, tokens=tokens, high_signal=high,
                         oldest=oldest, newest=oldest)


def test_the_policy_flushes_on_each_of_its_reasons_and_not_before() -> None:
    policy = FlushPolicy(max_events=10, max_tokens=100, max_wait_s=600)
    assert policy.due(summary(events=9, tokens=99), T0 + timedelta(seconds=599)) is None
    assert policy.due(summary(events=10), T0) == "events"
    assert policy.due(summary(tokens=100), T0) == "tokens"
    assert policy.due(summary(high=1), T0) == "high_signal"
    assert policy.due(summary(), T0 + timedelta(seconds=600)) == "wait"
    assert policy.due(summary(events=0, oldest=None), T0 + timedelta(days=9)) is None
    assert policy.due_at(summary()) == T0 + timedelta(seconds=600)


def test_the_default_policy_waits_for_a_chat_stream_but_not_for_an_outcome() -> None:
    policy = FlushPolicy()
    assert "chat_message" not in policy.high_signal_types
    assert {"outcome", "survey_answer"} <= policy.high_signal_types
    assert (policy.max_events, policy.max_tokens, policy.max_wait_s) == (50, 1_500, 3_600.0)


def test_a_policy_refuses_nonsense_naming_the_field() -> None:
    with pytest.raises(ValueError, match="max_events"):
        FlushPolicy(max_events=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        FlushPolicy(max_wait_s=-1)


# -- the engine: add, flush, worker ------------------------------------------------------

async def test_add_refuses_a_bad_event_naming_the_field_and_buffers_nothing(
        fake: FakeProvider) -> None:
    engine = engine_on(open_store("memory://"), fake, Clock())
    with pytest.raises(InvalidEventsError) as caught:
        await engine.add("u1", {"id": "e1", "type": "chat_message", "timestamp": "yesterday"})
    assert caught.value.errors[0].field == "timestamp"
    with pytest.raises(InvalidEventError, match="user_id"):
        await engine.add("u1", said("e1", "hi", user="u2"))
    with pytest.raises(InvalidEventsError):
        await engine.add_many([said("e1", "fine"), {"id": "e2", "type": "x"}])
    assert await engine.store.buffer_summaries(now=T0, high_signal_types=set()) == []


async def test_add_redacts_before_the_buffer_holds_the_text(fake: FakeProvider) -> None:
    store = open_store("memory://")
    engine = engine_on(store, fake, Clock())
    await engine.add("u1", said("e1", "Call me on 415-555-0134 about the SSO rollout"))
    claim = await store.buffer_claim("u1", "t", now=Clock()(), until=Clock()())
    assert "415-555-0134" not in (claim.events[0].text or "")


async def test_nothing_is_extracted_until_the_policy_says_so(fake: FakeProvider) -> None:
    clock = Clock()
    engine = engine_on(open_store("memory://"), fake, clock,
                       flush=FlushPolicy(max_events=4, max_wait_s=600))
    for i in range(3):
        await engine.add("u1", said(f"e{i}", f"We need SSO with Okta for team {i}", minute=i))
    report = await engine.flush()
    assert (report.users_due, fake.stats.requests, report.users_waiting) == (0, 0, 1)
    await engine.add("u1", viewed("e3", minute=3))
    report = await engine.flush()
    assert report.reasons == {"u1": "events"} and report.events == 4
    assert fake.stats.requests == 1 == report.llm_calls
    assert {eid for eid, _ in events_in(fake.stats.bodies[0])} == {"e0", "e1", "e2", "e3"}
    assert report.users_waiting == 0
    # A quiet user is flushed when its oldest event has waited long enough.
    await engine.add("u2", viewed("p1", user="u2"))
    clock.advance(599)
    assert (await engine.flush()).users_due == 0
    clock.advance(1)
    assert (await engine.flush()).reasons == {"u2": "wait"}


async def test_relevant_text_tokens_fill_a_buffer_and_noise_adds_none(
        fake: FakeProvider) -> None:
    engine = engine_on(open_store("memory://"), fake, Clock(),
                       flush=FlushPolicy(max_tokens=40))
    for i in range(20):  # page views and heartbeats carry no text: they never fill it
        await engine.add("u1", viewed(f"v{i}", minute=i))
        await engine.add("u1", {**viewed(f"h{i}", minute=i), "type": "heartbeat",
                                "text": "ping " * 50})
    assert (await engine.flush()).users_due == 0
    await engine.add("u1", said("e1", "We need SSO with Okta before the security review, "
                                "and SCIM provisioning for every team on the rollout plan",
                                minute=40))
    [waiting] = await engine.store.buffer_summaries(now=Clock()(), high_signal_types=set())
    assert 20 <= waiting.tokens < 40
    await engine.add("u1", said("e2", "Our CFO wants to see payback within six months, "
                                "before we commit to the annual plan", minute=41))
    assert (await engine.flush()).reasons == {"u1": "tokens"}


async def test_a_high_signal_event_flushes_its_user_at_once(fake: FakeProvider) -> None:
    engine = engine_on(open_store("memory://"), fake, Clock())
    await engine.add("u1", said("e1", "We need SSO with Okta before the review"))
    await engine.add("u2", said("e1", "We need SSO with Okta before the review", user="u2"))
    await engine.add("u1", said("s1", "Prefer email over calls", kind="survey_answer",
                                minute=1))
    report = await engine.flush()
    assert report.reasons == {"u1": "high_signal"} and report.events == 2


async def test_a_buffered_user_ends_with_the_model_a_direct_ingest_builds(
        fake: FakeProvider) -> None:
    events = [said(f"e{i}", f"We need SSO with Okta for the team number {i}", minute=i)
              for i in range(6)] + [viewed(f"v{i}", minute=10 + i) for i in range(4)]
    direct = engine_on(open_store("memory://"), fake, Clock())
    await direct.ingest("u1", events)
    buffered = engine_on(open_store("memory://"), fake, Clock())
    for event in events:
        await buffered.add("u1", event)
    report = await buffered.flush(force=True)
    assert report.reasons == {"u1": "forced"} and report.llm_calls == 1
    got, want = await buffered.model("u1"), await direct.model("u1")
    assert [(r.kind, r.statement, r.confidence, r.evidence_ids()) for r in got.records] == [
        (r.kind, r.statement, r.confidence, r.evidence_ids()) for r in want.records]


async def test_events_already_ingested_leave_the_buffer_without_a_call(
        fake: FakeProvider) -> None:
    engine = engine_on(open_store("memory://"), fake, Clock())
    await engine.add("u1", said("e1", "We need SSO with Okta before the review"))
    await engine.ingest("u1", [said("e1", "We need SSO with Okta before the review")])
    calls = fake.stats.requests
    report = await engine.flush(force=True)
    assert report.users_flushed == 1 and report.llm_calls == 0
    assert fake.stats.requests == calls and report.users_waiting == 0
    # ... and adding it again, once processed, buffers nothing.
    assert await engine.add_many([said("e1", "We need SSO with Okta before the review")]) == 0


class AddsDuringCommit:
    """A store that runs a step just before each commit: an event arriving mid-flush."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.before_commit: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, model: UserModel, **kwargs: Any) -> int:
        if self.before_commit:
            await self.before_commit.pop(0)()
        return int(await self.inner.commit(model, **kwargs))


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
async def test_an_event_added_during_a_flush_waits_for_the_next_one(
        fake: FakeProvider, tmp_path: Path, url: str) -> None:
    inner = open_store(f"sqlite:///{tmp_path / 'd.db'}" if url == "sqlite" else url)
    store = AddsDuringCommit(inner)
    engine = engine_on(store, fake, Clock())  # type: ignore[arg-type]
    await engine.add("u1", said("e1", "We need SSO with Okta before the review"))

    async def arrive() -> None:
        await engine.add("u1", said("e2", "And SCIM provisioning for the whole team", minute=1))
    store.before_commit.append(arrive)
    first = await engine.flush(force=True)
    assert first.events == 1 and first.users_waiting == 1
    second = await engine.flush(force=True)
    assert second.events == 1 and second.users_waiting == 0
    assert await inner.processed("u1", ["e1", "e2"]) == {"e1", "e2"}
    bodies = [{eid for eid, _ in events_in(b)} for b in fake.stats.bodies]
    assert bodies == [{"e1"}, {"e2"}]
    await inner.close()


async def test_a_user_deleted_mid_flush_stays_deleted(fake: FakeProvider) -> None:
    inner = open_store("memory://")
    store = AddsDuringCommit(inner)
    engine = engine_on(store, fake, Clock())  # type: ignore[arg-type]
    await engine.add("u1", said("e1", "We need SSO with Okta before the review"))
    store.before_commit.append(lambda: inner.delete_user("u1"))
    report = await engine.flush(force=True)
    assert list(report.errors) == ["u1"] and report.users_flushed == 0
    assert (await inner.load("u1")).records == ()
    assert await inner.buffer_summaries(now=T0, high_signal_types=set()) == []


async def test_a_failed_flush_keeps_the_events_until_its_lease_ends(fake: FakeProvider) -> None:
    clock = Clock()
    engine = engine_on(open_store("memory://"), fake, clock,
                       retry=RetryPolicy(attempts=1))
    await engine.add("u1", said("e1", "We need SSO with Okta before the review"))
    fake.faults.append("401")
    report = await engine.flush(force=True, lease_s=30)
    assert list(report.errors) == ["u1"] and report.users_flushed == 0
    assert (await engine.flush(force=True, lease_s=30)).users_due == 0  # still held
    clock.advance(31)
    report = await engine.flush(force=True, lease_s=30)
    assert report.users_flushed == 1 and report.events == 1


async def test_run_worker_drains_the_buffers_and_returns(fake: FakeProvider) -> None:
    engine = engine_on(open_store("memory://"), fake, Clock())
    for u in range(5):
        await engine.add_many([said(f"e{i}", f"We need SSO for team {u} item {i}", user=f"u{u}",
                                    minute=i) for i in range(3)])
    seen: list[int] = []
    await engine.run_worker(drain=True, poll_s=0.01, on_flush=lambda r: seen.append(r.events))
    assert sum(seen) == 15 and fake.stats.requests == 5
    assert await engine.store.buffer_summaries(now=T0, high_signal_types=set()) == []


# -- the CLI -------------------------------------------------------------------------------

def test_doxa_buffers_and_doxa_worker_drain(tmp_path: Path) -> None:
    with serving_in_thread(FakeProvider()) as fake:
        drained_buffers(fake, tmp_path / "d.db")


def drained_buffers(fake: FakeProvider, db: Path) -> None:
    engine = Engine(store=f"sqlite:///{db}")
    with tenant_scoped_user_ids():
        engine.add_many_sync([said("e1", "We need [bold]SSO[/bold] with Okta", user="acme/u1"),
                              said("s1", "Prefer email", user="solo", kind="survey_answer")])
    engine.close_sync()
    runner = CliRunner()
    shown = runner.invoke(app, ["buffers", "--db", str(db), "--json"])
    assert shown.exit_code == 0, shown.output
    rows = {r["user_id"]: r for r in json.loads(shown.stdout)}
    assert rows["acme/u1"]["pending"] == 1 and rows["acme/u1"]["due_reason"] is None
    assert rows["solo"]["due_reason"] == "high_signal" and rows["solo"]["oldest"]
    tenant = json.loads(runner.invoke(app, ["buffers", "--db", str(db), "--tenant", "acme",
                                            "--json"]).stdout)
    assert [r["user_id"] for r in tenant] == ["u1"]
    table = runner.invoke(app, ["buffers", "--db", str(db)])
    assert "acme/u1" in table.stdout and "high_signal" in table.stdout
    drained = runner.invoke(app, ["worker", "--db", str(db), "--model", "openai/fake",
                                  "--base-url", fake.base_url, "--drain", "--json"],
                            env={"OPENAI_API_KEY": "x"})
    assert drained.exit_code == 0, drained.output
    passes = [json.loads(line) for line in drained.stdout.splitlines()]
    assert sum(p["events"] for p in passes) == 2 and passes[-1]["users_waiting"] == 0
    empty = runner.invoke(app, ["buffers", "--db", str(db)])
    assert "No buffered events" in empty.stdout
