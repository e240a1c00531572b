"""The spool streams a file, validates every line, and hands out one user at a time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from doxa.errors import InvalidEventsError
from doxa.events.spool import UserSpool
from doxa.testing.fake_provider import FakeProvider
from doxa.workdir import sweep_stale


def line(user: str, event_id: str, minute: int, text: str = "hi there") -> str:
    return json.dumps({"id": event_id, "user_id": user, "type": "chat_message",
                       "timestamp": f"2026-03-02T10:{minute:02d}:00Z", "text": text})


def test_interleaved_users_come_out_grouped(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(line(u, f"e{i}", i) for i, u in enumerate("abcabcab")) + "\n")
    with UserSpool.from_file(path) as spool:
        assert spool.user_count() == 3 and spool.events == 8
        grouped = {u: [e.id for e in evs] for u, evs in spool.users()}
    assert grouped == {"a": ["e0", "e3", "e6"], "b": ["e1", "e4", "e7"], "c": ["e2", "e5"]}


def test_an_invalid_line_refuses_the_file_whole_unless_skipped(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([line("a", "e1", 1), "{broken", line("a", "e2", 2)]) + "\n")
    with pytest.raises(InvalidEventsError) as exc:
        UserSpool.from_file(path)
    assert exc.value.errors[0].line == 2
    with UserSpool.from_file(path, skip_invalid=True) as spool:
        assert spool.invalid == 1 and [len(evs) for _, evs in spool.users()] == [2]


def test_a_reused_id_with_other_content_is_an_error_and_an_exact_repeat_is_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([line("a", "e1", 1), line("a", "e1", 1),
                               line("a", "e1", 1, "different")]) + "\n")
    with pytest.raises(InvalidEventsError, match="used twice"):
        UserSpool.from_file(path)


def test_only_user_filters(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([line("a", "e1", 1), line("b", "e2", 2)]) + "\n")
    with UserSpool.from_file(path, only_user="b") as spool:
        assert [u for u, _ in spool.users()] == ["b"]


# -- the spool holds raw events: private, and gone with its process ----------------------------


def test_the_spool_is_private_and_gone_once_closed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = tmp_path / "e.jsonl"
    path.write_text(line("a", "e1", 1, "my secret words") + "\n")
    old = os.umask(0o022)
    try:
        with UserSpool.from_file(path) as spool:
            assert stat.S_IMODE(spool.dir.stat().st_mode) == 0o700
            assert stat.S_IMODE((spool.dir / "spool.db").stat().st_mode) == 0o600
            assert sweep_stale(tmp_path) == []  # alive: its lock is held
    finally:
        os.umask(old)
    assert list(tmp_path.glob("doxa-spool-*")) == []


def test_a_spool_whose_process_is_gone_is_swept_and_others_are_not(tmp_path: Path) -> None:
    dead = tmp_path / "doxa-spool-dead"
    dead.mkdir(mode=0o700)
    (dead / "lock").write_text("999999")  # nobody holds it: its process is gone
    (dead / "spool.db").write_text("raw events")
    unlocked_old = tmp_path / "doxa-spool-old"  # no lock file: being made, or an older doxa
    unlocked_old.mkdir()
    dead_backfill = tmp_path / "doxa-backfill-dead"  # a round's requests, killed mid-submit
    dead_backfill.mkdir(mode=0o700)
    (dead_backfill / "lock").write_text("999998")
    elsewhere = tmp_path / "not-a-spool"
    elsewhere.mkdir()
    assert sorted(sweep_stale(tmp_path)) == [dead_backfill, dead]
    assert not dead.exists() and not dead_backfill.exists()
    assert unlocked_old.exists() and elsewhere.exists()


@pytest.fixture
async def slow_fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider(latency_s=5.0).start()  # an ingest stays in flight
    yield provider
    await provider.stop()


async def start_ingest(events: Path, tmp: Path, fake: FakeProvider) -> asyncio.subprocess.Process:
    env = {**os.environ, "OPENAI_API_KEY": "x", "TMPDIR": str(tmp)}
    # An ignored SIGINT survives exec, and something earlier in a full test session leaves
    # it ignored in the pytest process (seen as an ingest that ran to the end, exit 0).
    # A user's shell starts `doxa ingest` with Ctrl-C at its default: so does this.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "doxa", "ingest", str(events), "--db",
            str(tmp.parent / "d.db"), "--model", "openai/fake", "--base-url", fake.base_url,
            "--json", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        signal.signal(signal.SIGINT, previous)


async def in_flight(tmp: Path, fake: FakeProvider, proc: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        assert proc.returncode is None, "doxa ingest ended before it could be stopped"
        if fake.stats.requests and spools(tmp):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("doxa ingest never reached the LLM call")


def spools(tmp: Path) -> list[Path]:
    return list(tmp.glob("doxa-spool-*"))


def events_file(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(line(u, f"e{i}", i, f"We need SSO for team {u} ({i})")
                                for i, u in enumerate("ab")) + "\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return events, tmp


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_stopped_ingest_leaves_no_spool(slow_fake: FakeProvider, tmp_path: Path,
                                                signum: int) -> None:
    events, tmp = events_file(tmp_path)
    proc = await start_ingest(events, tmp, slow_fake)
    await in_flight(tmp, slow_fake, proc)
    proc.send_signal(signum)
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode != 0, stderr.decode()
    assert spools(tmp) == []


async def test_a_killed_ingests_spool_is_removed_by_the_next_run(
    slow_fake: FakeProvider, tmp_path: Path,
) -> None:
    events, tmp = events_file(tmp_path)
    proc = await start_ingest(events, tmp, slow_fake)
    await in_flight(tmp, slow_fake, proc)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    [left] = spools(tmp)
    assert b"We need SSO" in (left / "spool.db").read_bytes()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    proc = await start_ingest(empty, tmp, slow_fake)
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert spools(tmp) == []
