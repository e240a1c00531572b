"""Crash safety: `doxa ingest` killed with SIGKILL at 50 random points, then re-run, leaves
exactly the store an uninterrupted run leaves: no lost or doubled evidence, no orphan rows."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from doxa.testing.fake_provider import FakeProvider

KILLS = 50
TOPICS = ["SSO", "Salesforce sync", "monthly billing", "ROI calculator", "SOC 2", "dark mode"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider(latency_s=0.01).start()
    yield provider
    await provider.stop()


def write_events(path: Path, users: int = 12) -> None:
    with path.open("w") as fh:
        for u in range(users):
            for i in range(8):
                fh.write(json.dumps({
                    "id": f"e{i}", "user_id": f"u{u:02d}", "type": "chat_message",
                    "timestamp": f"2026-03-0{1 + i % 8}T10:{i:02d}:00Z",
                    "text": f"We need {TOPICS[(u + i) % 6]} for team {u} before rollout {i}"},
                ) + "\n")


def ingest_cmd(events: Path, db: Path, base_url: str) -> list[str]:
    return [sys.executable, "-m", "doxa", "ingest", str(events), "--db", str(db),
            "--model", "openai/fake", "--base-url", base_url, "--json", "--concurrency", "4"]


def snapshot(db: Path) -> dict[str, object]:
    con = sqlite3.connect(db)
    records = sorted((u, kind, statement, status, round(conf, 6)) for u, kind, statement, status,
                     conf in con.execute(
                         "SELECT user_id, kind, statement, status, confidence FROM records"))
    evidence = sorted(con.execute("SELECT user_id, event_id, polarity FROM evidence"))
    ledger = sorted(con.execute("SELECT user_id, event_id FROM ledger"))
    orphans = con.execute(
        "SELECT count(*) FROM evidence e LEFT JOIN records r USING (user_id, record_id) "
        "WHERE r.record_id IS NULL").fetchone()[0] + con.execute(
        "SELECT count(*) FROM revisions v LEFT JOIN records r USING (user_id, record_id) "
        "WHERE r.record_id IS NULL").fetchone()[0]
    con.close()
    return {"records": records, "evidence": evidence, "ledger": ledger, "orphans": orphans}


async def test_sigkill_at_random_points_then_rerun_equals_an_uninterrupted_run(
    fake: FakeProvider, tmp_path: Path,
) -> None:
    import asyncio

    events = tmp_path / "events.jsonl"
    write_events(events)
    env = {**os.environ, "OPENAI_API_KEY": "x"}

    async def ingest(db: Path, kill_after: float | None = None) -> bool:
        """Run `doxa ingest`; with kill_after, SIGKILL it then. True if it was killed."""
        proc = await asyncio.create_subprocess_exec(
            *ingest_cmd(events, db, fake.base_url), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kill_after is not None:
            try:
                await asyncio.wait_for(proc.wait(), kill_after)
            except TimeoutError:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                return True
        assert await proc.wait() == 0
        return False

    started = time.monotonic()
    await ingest(tmp_path / "clean.db")
    full_run = time.monotonic() - started
    expected = snapshot(tmp_path / "clean.db")
    assert expected["orphans"] == 0 and len(expected["ledger"]) == 96

    rng = random.Random(20261123)
    killed_mid_run = 0
    for trial in range(KILLS):
        db = tmp_path / f"crashed-{trial}.db"
        killed_mid_run += await ingest(db, kill_after=rng.uniform(0.1, full_run))
        await ingest(db)  # the re-run after the crash
        assert snapshot(db) == expected, f"trial {trial}"
        for leftover in tmp_path.glob(f"crashed-{trial}.db*"):  # noqa: ASYNC240
            leftover.unlink()
    assert killed_mid_run >= KILLS * 0.8, "the kills must land while the ingest runs"
