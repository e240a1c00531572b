"""Backfills through the batch APIs, against the fake provider's OpenAI Batch API and
Anthropic Message Batches: rounds in event order, the same requests and validation as
online, resume after a kill without a second job or a second merge, failures per user."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.errors import BackfillStateError
from doxa.events.parse import Event
from doxa.llm.client import RetryPolicy
from doxa.llm.providers import ProviderSpec
from doxa.llm.providers.openai import OpenAIProvider
from doxa.relevance import RelevanceConfig
from doxa.runs.backfill import (
    Backfill,
    BackfillConfig,
    BackfillProgress,
    BackfillState,
    custom_id,
    events_by_user,
)
from doxa.testing.fake_provider import FakeProvider

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SAID = {
    "ana": ["We need SSO before the security review",
            "Please keep replies short and in bullets",
            "I think the reporting module is too slow",
            "We plan to roll this out to three teams"],
    "ben@example.com": ["I want a cheaper plan for my small team",
                        "I prefer email over phone calls please",
                        "The onboarding videos were really helpful today",
                        "We need an export to our data warehouse"],
}


def history() -> list[Event]:
    return [Event(id=f"{user[:3]}{n}", user_id=user, type="chat_message",
                  timestamp=T0 + timedelta(days=n), text=text)
            for user, texts in SAID.items() for n, text in enumerate(texts)]


class Crash(Exception):
    """Stands in for a kill: raised from the progress callback at a chosen step."""


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider(batch_polls=1).start()
    yield provider
    await provider.stop()


def engine_for(fake: FakeProvider, wire: str, store: str = "memory://") -> Engine:
    # Two events a batch: each user's history is two batches, so two rounds.
    base = fake.base_url.removesuffix("/v1") if wire == "anthropic" else fake.base_url
    return Engine(model=f"{wire}/fake", store=store, base_url=base, api_key="x",
                  relevance=RelevanceConfig(max_events=2), retry=RetryPolicy(attempts=1))


def backfill(engine: Engine, state: Path, *, crash_at: tuple[str, int, int] | None = None,
             **config: Any) -> Backfill:
    """A backfill that raises `Crash` on reaching (phase, round, done), when given."""
    def progress(p: BackfillProgress) -> None:
        if crash_at is not None and (p.phase, p.round, p.done) == crash_at:
            raise Crash(p)
    return Backfill(engine, events_by_user(history()), state,
                    config=BackfillConfig(poll_interval_s=0.0, **config), on_progress=progress)


def statements(engine_model: Any) -> list[tuple[str, list[str]]]:
    return sorted((r.statement, [e.event_id for e in r.evidence]) for r in engine_model.records)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_backfill_gives_the_online_model_for_half_the_price(
        fake: FakeProvider, wire: str, tmp_path: Path) -> None:
    fake.keep_bodies = True
    online = engine_for(fake, wire)
    for user in SAID:
        await online.ingest(user, [e for e in history() if e.user_id == user])
    online_bodies = list(fake.stats.bodies)

    engine = engine_for(fake, wire)
    result = await backfill(engine, tmp_path / "state.json").run()

    assert (result.rounds, result.jobs, result.requests, result.answered) == (2, 2, 4, 4)
    assert fake.stats.batches_created == 2 and fake.stats.batch_lines == 4
    assert result.errored == 0 and result.failed_users == {} and not result.resumed
    for user in SAID:  # same records, same evidence as the online path
        assert statements(await engine.model(user)) == statements(await online.model(user))
        assert len(await engine.model(user)) == 4
    # Every batched request asks exactly what the online path sent (as JSON values).
    batched = [body for job in fake.batches.values() for _, body in job.lines]
    def key(body: dict[str, Any]) -> str:
        return json.dumps(body, sort_keys=True)
    assert sorted(map(key, batched)) == sorted(map(key, online_bodies))
    assert result.input_tokens > 0 and result.output_tokens > 0
    assert not (tmp_path / "state.json").exists()  # nothing left to resume


async def test_round_two_is_prompted_with_the_records_round_one_merged(
        fake: FakeProvider, tmp_path: Path) -> None:
    await backfill(engine_for(fake, "openai"), tmp_path / "s.json").run()
    first, second = fake.batches.values()
    ana_1 = dict(first.lines)[custom_id("ana", 1)]["messages"][1]["content"]
    ana_2 = dict(second.lines)[custom_id("ana", 2)]["messages"][1]["content"]
    assert "Known records" not in ana_1  # none yet: the section is left out
    assert "Known records" in ana_2
    assert "Said: We need SSO before the security review" in ana_2  # batch 1's record
    assert 'id="ana0"' in ana_1 and 'id="ana2"' in ana_2  # events in order


def test_custom_ids_are_user_and_round_within_the_providers_rules() -> None:
    assert custom_id("ana", 3) == "ana-3"
    odd = custom_id("ben@example.com", 1)
    assert odd.endswith("-1") and odd.replace("-", "").replace("_", "").isalnum()
    assert len(odd) <= 64 and odd != custom_id("ben@example.org", 1)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_kill_after_submit_resumes_the_same_job(
        fake: FakeProvider, wire: str, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    engine = engine_for(fake, wire)
    with pytest.raises(Crash):  # killed while round 1 is still running at the provider
        await backfill(engine, state, crash_at=("waiting", 1, 0)).run()
    saved = BackfillState.model_validate_json(state.read_text())
    assert saved.outstanding is not None and saved.outstanding.number == 1
    [job] = saved.outstanding.jobs
    assert job.id in fake.batches and len(job.requests) == 2
    assert fake.stats.batches_created == 1

    result = await backfill(engine, state).run()  # the same command again
    assert fake.stats.batches_created == 2  # round 1's job collected, not submitted again
    assert result.resumed and (result.rounds, result.jobs, result.requests) == (2, 2, 4)
    for user in SAID:
        assert len(await engine.model(user)) == 4


async def test_a_kill_mid_merge_does_not_merge_anything_twice(
        fake: FakeProvider, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    engine = engine_for(fake, "openai")
    # Killed after the first user of round 1 was committed, before the job was marked merged.
    with pytest.raises(Crash):
        await backfill(engine, state, crash_at=("merging", 1, 1)).run()
    ana_after_crash = statements(await engine.model("ana"))
    assert len(ana_after_crash) == 2

    result = await backfill(engine, state).run()
    assert fake.stats.batches_created == 2 and fake.stats.results_downloaded == 3
    reference = engine_for(fake, "openai")
    await backfill(reference, tmp_path / "ref.json").run()
    for user in SAID:  # each event cited once: identical to an uninterrupted backfill
        assert statements(await engine.model(user)) == statements(await reference.model(user))
    assert result.batches_merged == 4 and result.answered == 4  # counted once each


async def test_a_round_already_merged_is_not_merged_again(
        fake: FakeProvider, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    engine = engine_for(fake, "anthropic")
    with pytest.raises(Crash):  # killed once round 2 was submitted
        await backfill(engine, state, crash_at=("submitted", 2, 0)).run()
    saved = BackfillState.model_validate_json(state.read_text())
    assert saved.round == 1 and saved.outstanding is not None
    assert saved.outstanding.number == 2
    result = await backfill(engine, state).run()
    # Round 1's results are not fetched again, round 2's job is not submitted again.
    assert fake.stats.batches_created == 2 and fake.stats.results_downloaded == 2
    assert (result.rounds, result.answered, result.batches_merged) == (2, 4, 4)
    assert [len(await engine.model(u)) for u in SAID] == [4, 4]


async def test_an_expired_batch_is_retried_in_the_next_round(
        fake: FakeProvider, tmp_path: Path) -> None:
    fake.batch_faults = ["expired"]
    engine = engine_for(fake, "openai")
    result = await backfill(engine, tmp_path / "s.json").run()
    assert (result.rounds, result.errored, result.answered) == (3, 2, 4)
    assert result.failed_users == {}
    assert [len(await engine.model(u)) for u in SAID] == [4, 4]


@pytest.mark.parametrize(("wire", "fault", "reason"), [
    ("openai", "expired", "batch_expired"),
    ("openai", "failed", "batch failed: line 1: fake validation failure"),
    ("anthropic", "expired", "expired"),
    ("anthropic", "failed", "errored: fake internal error"),
])
async def test_a_batch_that_fails_every_time_sets_its_users_aside_with_the_reason(
        fake: FakeProvider, tmp_path: Path, wire: str, fault: Any, reason: str) -> None:
    fake.batch_faults = [fault, fault]
    engine = engine_for(fake, wire)
    result = await backfill(engine, tmp_path / "s.json", retries=1).run()
    assert set(result.failed_users) == set(SAID) and result.answered == 0
    assert all(reason in why and "2 attempt(s)" in why for why in result.failed_users.values())
    for user in SAID:  # nothing half-written: no record, no event marked processed
        assert len(await engine.model(user)) == 0
        assert await engine.store.processed(user, [e.id for e in history()]) == set()


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["errored-line", "invalid-line"])
async def test_one_bad_line_fails_that_user_only(
        fake: FakeProvider, tmp_path: Path, wire: str, fault: Any) -> None:
    fake.batch_faults = [fault]
    engine = engine_for(fake, wire)
    result = await backfill(engine, tmp_path / "s.json", retries=0).run()
    [(failed, why)] = result.failed_users.items()
    other = next(u for u in SAID if u != failed)
    assert ("fake internal error" in why if fault == "errored-line"
            else "extraction invalid" in why)
    assert len(await engine.model(other)) == 4 and len(await engine.model(failed)) == 0
    assert await engine.store.processed(failed, [e.id for e in history()]) == set()
    assert (result.rounds, result.requests, result.errored, result.answered) == (2, 3, 1, 2)


async def test_a_failed_user_is_picked_up_by_a_later_backfill(
        fake: FakeProvider, tmp_path: Path) -> None:
    fake.batch_faults = ["errored-line"]
    engine = engine_for(fake, "openai")
    first = await backfill(engine, tmp_path / "s.json", retries=0).run()
    assert len(first.failed_users) == 1
    again = await backfill(engine, tmp_path / "s.json").run()
    assert again.failed_users == {} and again.requests == 2
    assert [len(await engine.model(u)) for u in SAID] == [4, 4]


async def test_a_user_deleted_during_the_backfill_stays_deleted(
        fake: FakeProvider, tmp_path: Path) -> None:
    """The delete lands after round 1 was submitted: its answer, and every later round,
    began before the delete, so none of them may bring the user back."""
    engine = engine_for(fake, "openai")
    deleting: list[asyncio.Task[None]] = []

    def progress(p: BackfillProgress) -> None:
        if (p.phase, p.round) == ("submitted", 1) and not deleting:
            deleting.append(asyncio.get_running_loop().create_task(engine.delete_user("ana")))

    run = Backfill(engine, events_by_user(history()), tmp_path / "s.json",
                   config=BackfillConfig(poll_interval_s=0.0), on_progress=progress)
    result = await run.run()
    assert deleting and deleting[0].done()
    assert "deleted while the backfill ran" in result.failed_users["ana"]
    assert len(await engine.model("ana")) == 0
    assert await engine.store.processed("ana", [e.id for e in history()]) == set()
    assert len(await engine.model("ben@example.com")) == 4


async def test_a_rounds_requests_sit_in_a_private_directory_gone_after_submit(
        fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request lines hold event text: they are written to a locked 0700 directory
    (swept by the next run if this one is killed) and removed once submitted."""
    import stat
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[tuple[int, bool]] = []

    def job_folders() -> list[Path]:
        return list(tmp_path.glob("doxa-backfill-*"))

    def progress(p: BackfillProgress) -> None:
        if p.phase == "preparing":
            [folder] = job_folders()
            seen.append((stat.S_IMODE(folder.stat().st_mode), (folder / "lock").exists()))

    run = Backfill(engine_for(fake, "openai"), events_by_user(history()), tmp_path / "s.json",
                   config=BackfillConfig(poll_interval_s=0.0), on_progress=progress)
    await run.run()
    assert seen and set(seen) == {(0o700, True)}
    assert job_folders() == []


async def test_jobs_are_cut_at_the_request_limit(fake: FakeProvider, tmp_path: Path) -> None:
    result = await backfill(engine_for(fake, "openai"), tmp_path / "s.json",
                            max_requests_per_job=1).run()
    assert (result.rounds, result.jobs, result.requests) == (2, 4, 4)
    assert fake.stats.batches_created == 4


async def test_a_state_file_from_another_model_is_refused(
        fake: FakeProvider, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    with pytest.raises(Crash):
        await backfill(engine_for(fake, "openai"), state, crash_at=("waiting", 1, 0)).run()
    with pytest.raises(BackfillStateError, match=r"anthropic/fake.*Re-run with the same"):
        await backfill(engine_for(fake, "anthropic"), state).run()


def test_batch_prices_are_half_the_online_price() -> None:
    spec = ProviderSpec(OpenAIProvider(), "gpt-4o-mini")
    assert spec.cost(1_000_000, 1_000_000) == 0.75
    assert spec.cost(1_000_000, 1_000_000, batch=True) == 0.375


class SubmitThenDie:
    """The provider accepts the job, then the process dies before the id is saved."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.max_requests, self.max_bytes = api.max_requests, api.max_bytes
        self.line, self.find = api.line, api.find
        self.status, self.results = api.status, api.results

    async def submit(self, path: Path, tag: str) -> str:
        await self.api.submit(path, tag)
        raise Crash("killed mid-submit")


async def test_a_kill_mid_submit_finds_the_openai_job_by_its_tag(
        fake: FakeProvider, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    engine = engine_for(fake, "openai")
    dying = backfill(engine, state)
    dying._api = SubmitThenDie(dying.api)
    with pytest.raises(Crash):
        await dying.run()
    saved = BackfillState.model_validate_json(state.read_text())
    assert saved.outstanding is not None and saved.outstanding.jobs[0].id == ""
    result = await backfill(engine, state).run()
    assert fake.stats.batches_created == 2 and result.answered == 4  # found, not resubmitted


async def test_a_record_citing_an_unknown_event_is_dropped_and_counted(
        fake: FakeProvider) -> None:
    from openai.types.chat import ChatCompletion

    from doxa.testing.fake_provider import _openai_body

    engine = engine_for(fake, "openai")
    [first, _] = await engine.pending_batches("ana", [e for e in history() if e.user_id == "ana"])
    bad = {"notes": "", "records": [
        {"kind": "goal", "statement": "Wants SSO", "context": "security", "basis": "explicit",
         "evidence": [{"event_id": "ana0"}]},
        {"kind": "goal", "statement": "Injected goal", "context": "x", "basis": "explicit",
         "evidence": [{"event_id": "no-such-event"}]}]}
    answer = ChatCompletion.model_validate(_openai_body(bad, 100, 20))
    outcome = engine.extractor.parse_answer(first, frozenset(), answer)
    assert [r.statement for r in outcome.proposals] == ["Wants SSO"]
    [dropped] = outcome.dropped
    assert "no-such-event" in dropped.reasons[0]
    assert (outcome.input_tokens, outcome.output_tokens) == (100, 20)


# -- the command, killed for real ----------------------------------------------------------

async def doxa(*args: str, kill_when: Any = None) -> tuple[int, str, str]:
    """Run the `doxa` CLI in a subprocess (the fake keeps serving in this event loop);
    SIGKILL it as soon as `kill_when()` is true."""
    import asyncio
    import os
    import sys

    env = {**os.environ, "OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "doxa", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    if kill_when is not None:
        for _ in range(3000):
            if kill_when() or proc.returncode is not None:
                break
            await asyncio.sleep(0.01)
        proc.kill()
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_doxa_backfill_batch_api_killed_mid_batch_resumes_without_a_second_job(
        fake: FakeProvider, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(e.model_dump_json() + "\n" for e in history()))
    db = tmp_path / "doxa.db"
    args = ("backfill", str(events), "--batch-api", "--model", "openai/fake",
            "--base-url", fake.base_url, "--db", str(db), "--poll-interval", "0.05")
    fake.batch_polls = 10_000  # round 1 stays in progress until the process is killed
    code, _, _ = await doxa(*args, kill_when=lambda: fake.stats.batch_polls >= 2)
    assert code != 0 and fake.stats.batches_created == 1
    state = BackfillState.model_validate_json(
        (tmp_path / "events.jsonl.backfill-state.json").read_text())
    assert state.outstanding is not None and state.outstanding.jobs[0].id in fake.batches

    fake.batch_polls = 0
    code, out, err = await doxa(*args, "--json")
    assert code == 0, err
    result = json.loads(out)
    # One batch per user with the default relevance settings: one round, whose job the
    # killed run submitted and this run collected, not submitted again.
    assert fake.stats.batches_created == 1 and fake.stats.results_downloaded == 1
    assert (result["rounds"], result["requests"], result["answered"]) == (1, 2, 2)
    assert result["resumed"] and result["failed_users"] == {}
    assert not (tmp_path / "events.jsonl.backfill-state.json").exists()

    code, out, _ = await doxa("show", "ana", "--db", str(db), "--json")
    assert code == 0 and len(json.loads(out)["records"]) == 4


async def test_doxa_backfill_prints_a_summary_and_names_failed_users(
        fake: FakeProvider, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(e.model_dump_json() + "\n" for e in history()))
    fake.batch_faults = ["errored-line"]
    code, out, err = await doxa(
        "backfill", str(events), "--batch-api", "--model", "anthropic/fake",
        "--base-url", fake.base_url.removesuffix("/v1"), "--db", str(tmp_path / "d.db"),
        "--poll-interval", "0", "--retries", "0")
    assert code == 1
    assert "2 user(s) backfilled through the batch API: 1 round(s), 1 batch job(s), 2 " \
        "request(s) (1 answered, 1 failed)" in out.replace("\n", " ")
    assert "at the 50% batch price" in out.replace("\n", " ")
    assert "failed ana: batch b_" in err and "fake internal error" in err
