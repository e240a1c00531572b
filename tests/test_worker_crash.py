"""Crash safety of the buffer: `doxa worker` killed with SIGKILL mid-flush, 20 times, then
run again, loses no buffered event and extracts none twice.

"Lost" and "twice" are checked on the store and on the wire: after the re-run the store
equals the one an uninterrupted worker leaves (records, evidence, ledger, no orphan rows,
an empty buffer), and no request the re-run sends holds an event whose extraction the
killed worker had already committed.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from doxa.engine import Engine
from doxa.testing.fake_provider import FakeProvider, events_in

KILLS = 20
USERS = 12
PER_USER = 8
TOPICS = ["SSO", "Salesforce sync", "monthly billing", "ROI calculator", "SOC 2", "dark mode"]
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider(latency_s=0.15, keep_bodies=True).start()
    yield provider
    await provider.stop()


async def buffered_store(path: Path) -> None:
    """12 users' events, added one at a time as a product would send them."""
    engine = Engine(store=f"sqlite:///{path}")
    for i in range(PER_USER):
        for u in range(USERS):
            await engine.add(f"u{u:02d}", {
                "id": f"u{u:02d}-e{i}", "type": "chat_message",
                "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
                "text": f"We need {TOPICS[(u + i) % 6]} for team {u} before rollout {i}"})
    await engine.close()


def worker_cmd(db: Path, base_url: str) -> list[str]:
    return [sys.executable, "-m", "doxa", "worker", "--db", str(db), "--model", "openai/fake",
            "--base-url", base_url, "--drain", "--lease", "1", "--poll", "0.05",
            "--concurrency", "4", "--json"]


def read(db: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def snapshot(db: Path) -> dict[str, object]:
    return {
        "records": sorted((u, kind, statement, status, round(float(conf), 6))  # type: ignore[arg-type]
                          for u, kind, statement, status, conf in read(
                              db, "SELECT user_id, kind, statement, status, confidence "
                                  "FROM records")),
        "evidence": sorted(read(db, "SELECT user_id, event_id, polarity FROM evidence")),
        "ledger": sorted(read(db, "SELECT user_id, event_id FROM ledger")),
        "buffered": read(db, "SELECT count(*) FROM buffer")[0][0],
        "orphans": read(db, "SELECT count(*) FROM evidence e LEFT JOIN records r "
                            "USING (user_id, record_id) WHERE r.record_id IS NULL")[0][0],
    }


async def test_sigkill_mid_flush_then_rerun_loses_nothing_and_extracts_nothing_twice(
    fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    base = tmp_path / "buffered.db"
    await buffered_store(base)

    async def run_worker(db: Path) -> None:
        proc = await asyncio.create_subprocess_exec(
            *worker_cmd(db, fake.base_url), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        assert await proc.wait() == 0

    async def first_claim(db: Path, proc: asyncio.subprocess.Process) -> float:
        """Wait until the worker holds buffered events: its flush has begun."""
        while not read(db, "SELECT 1 FROM buffer WHERE claim IS NOT NULL LIMIT 1"):
            assert proc.returncode is None, "the worker ended before it claimed anything"
            await asyncio.sleep(0.01)
        return time.monotonic()

    clean = tmp_path / "clean.db"
    shutil.copy(base, clean)
    proc = await asyncio.create_subprocess_exec(
        *worker_cmd(clean, fake.base_url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    flushing_since = await first_claim(clean, proc)
    # The window is the flush itself, first claim to last commit (not the process's exit,
    # which on a loaded machine can outlast it many times over).
    while read(clean, "SELECT count(*) FROM ledger")[0][0] < USERS * PER_USER:  # noqa: ASYNC110 (another process writes it)
        await asyncio.sleep(0.01)
    flush_window = time.monotonic() - flushing_since
    assert await proc.wait() == 0
    expected = snapshot(clean)
    assert len(expected["ledger"]) == USERS * PER_USER  # type: ignore[arg-type]
    assert expected["buffered"] == 0 and expected["orphans"] == 0

    rng = random.Random(20261201)
    mid_flush = 0
    for trial in range(KILLS):
        db = tmp_path / f"crashed-{trial}.db"
        shutil.copy(base, db)
        proc = await asyncio.create_subprocess_exec(
            *worker_cmd(db, fake.base_url), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        await first_claim(db, proc)
        await asyncio.sleep(rng.uniform(0.0, flush_window))
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
        committed = {eid for _, eid in read(db, "SELECT user_id, event_id FROM ledger")}
        mid_flush += 0 < len(committed) < USERS * PER_USER or bool(
            read(db, "SELECT 1 FROM buffer WHERE claim IS NOT NULL LIMIT 1"))
        sent_before = len(fake.stats.bodies)
        await run_worker(db)  # the re-run after the crash
        assert snapshot(db) == expected, f"trial {trial}"
        resent = {eid for body in fake.stats.bodies[sent_before:]
                  for eid, _ in events_in(body)} & committed
        assert resent == set(), f"trial {trial}: extracted again after their commit"
        for leftover in tmp_path.glob(f"crashed-{trial}.db*"):  # noqa: ASYNC240
            leftover.unlink()
    assert mid_flush >= KILLS * 0.8, "the kills must land while the worker flushes"
