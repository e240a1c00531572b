"""Several workers ingesting overlapping events for the same users, against one store:
the final models equal a serial run's (no lost update, no doubled evidence)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.llm.client import RetryPolicy
from doxa.model.records import UserModel
from doxa.testing.fake_provider import FakeProvider

PG_URL = os.environ.get("DOXA_TEST_POSTGRES_URL")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TOPICS = ["SSO with Okta", "a Salesforce sync", "monthly billing", "an ROI calculator",
          "SOC 2 reports", "dark mode", "a Slack alert", "CSV export", "audit logs",
          "a sandbox account", "priority support", "an on-prem option"]


def events(user: str, lo: int, hi: int) -> list[dict[str, Any]]:
    return [{"id": f"e{i}", "user_id": user, "type": "chat_message",
             "timestamp": (T0 + timedelta(hours=i)).isoformat(),
             "text": f"We really need {TOPICS[i]} before we can roll this out"}
            for i in range(lo, hi)]


def content(model: UserModel) -> list[tuple[Any, ...]]:
    return sorted((r.kind, r.statement, tuple(sorted(r.evidence_ids())), round(r.confidence, 6),
                   r.status) for r in model.records)


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = await FakeProvider(latency_s=0.05).start()
    yield fake
    await fake.stop()


def store_urls(tmp_path: Path) -> dict[str, str]:
    urls = {"sqlite": f"sqlite:///{tmp_path / 'shared.db'}"}
    if PG_URL:
        urls["postgres"] = PG_URL
    elif os.environ.get("CI"):
        pytest.fail("CI must set DOXA_TEST_POSTGRES_URL (scripts/pg-test-cluster.sh)")
    return urls


async def test_overlapping_workers_end_with_the_serial_model(provider: FakeProvider,
                                                             tmp_path: Path) -> None:
    for name, url in store_urls(tmp_path).items():
        users = [f"cc-{name}-{uuid.uuid4().hex[:6]}" for _ in range(3)]
        slices = [(0, 6), (3, 9), (6, 12), (0, 12)]

        def engine(store: str) -> Engine:
            return Engine(model="openai/fake", store=store, base_url=provider.base_url,
                          api_key="x", retry=RetryPolicy(attempts=3, backoff_base=0.01))

        workers = [engine(url) for _ in slices]
        jobs = [w.ingest(u, events(u, lo, hi)) for u in users
                for w, (lo, hi) in zip(workers, slices, strict=True)]
        results = await asyncio.gather(*jobs)
        assert sum(r.commit_retries for r in results) > 0, "the workers did collide"
        serial = engine(f"sqlite:///{tmp_path / f'serial-{name}.db'}")
        for u in users:
            for lo, hi in slices:
                await serial.ingest(u, events(u, lo, hi))
            shared = await workers[0].model(u)
            assert content(shared) == content(await serial.model(u)), name
            ids = [e for r in shared.records for e in r.evidence_ids()]
            assert len(ids) == len(set(ids)) == 12
        for w in [*workers, serial]:
            await w.close()
