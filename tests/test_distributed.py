"""The Ray path: users spread over Ray workers, one PostgreSQL store shared by all of them,
ends with the same models as one process ingesting the same events.

Runs on a local Ray (2 CPUs) against the fake provider on loopback and the PostgreSQL of
`DOXA_TEST_POSTGRES_URL` (`.ci/run` starts one); without it, or without Ray, the tests skip
locally and fail in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from doxa.cli.main import app
from doxa.engine import Engine
from doxa.llm.client import RetryPolicy
from doxa.testing.fake_provider import FakeProvider

# The same twelve-topic events and model comparison as the single-machine concurrency test.
from test_concurrency import content, events

PG_URL = os.environ.get("DOXA_TEST_POSTGRES_URL")
RETRY = RetryPolicy(attempts=3, backoff_base=0.01)


def _require(condition: bool, what: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {what}")
        pytest.skip(f"no {what}")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray for this module: two CPUs, so two tasks really run at once."""
    try:
        import ray
        import ray.data
    except ImportError:
        _require(False, "Ray (pip install -e '.[ray]')")
    _require(bool(PG_URL), "DOXA_TEST_POSTGRES_URL (scripts/pg-test-cluster.sh)")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    # Ray's default group-by shuffle is 200 partitions wide: seconds of overhead on 2 CPUs.
    ray.data.DataContext.get_current().default_hash_shuffle_parallelism = 2
    yield
    ray.shutdown()


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    # Latency keeps each ingest in flight long enough for two workers to overlap.
    fake = await FakeProvider(latency_s=0.3).start()
    yield fake
    await fake.stop()


def engine(store: str, provider: FakeProvider) -> Engine:
    return Engine(model="openai/fake", store=store, base_url=provider.base_url, api_key="x",
                  retry=RETRY)


async def assert_same_as_serial(users: dict[str, list[list[dict[str, Any]]]],
                                provider: FakeProvider) -> None:
    """Each user's model in PostgreSQL equals one process ingesting the same slices in order."""
    assert PG_URL
    serial, shared = engine("memory://", provider), engine(PG_URL, provider)
    for user, slices in users.items():
        for part in slices:
            await serial.ingest(user, part)
        stored = await shared.model(user)
        assert stored.records, user
        assert content(stored) == content(await serial.model(user)), user
        ids = [e for r in stored.records for e in r.evidence_ids()]
        assert len(ids) == len(set(ids)), "no event counted twice"
    await serial.close()
    await shared.close()


async def test_a_file_of_users_over_ray_workers_matches_one_process(
        ray_local: None, provider: FakeProvider, tmp_path: Path) -> None:
    from doxa.runs.distributed import ingest_ray

    users = [f"ray-{uuid.uuid4().hex[:6]}-{n}" for n in range(6)]
    per_user = {u: events(u, n, n + 5) for n, u in enumerate(users)}
    lines = [e for i in range(5) for u in users for e in per_user[u][i:i + 1]]  # interleaved
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))

    summary = await asyncio.to_thread(
        ingest_ray, path, store=PG_URL or "", model="openai/fake", base_url=provider.base_url,
        api_key="x", users_per_task=1, workers=2,
        engine_options={"retry": RETRY})

    assert summary.errors == {}
    assert (summary.users, summary.rows, summary.events_new) == (6, 6, 30)
    assert summary.llm_calls == provider.stats.answered == 6
    await assert_same_as_serial({u: [per_user[u]] for u in users}, provider)


async def test_two_workers_on_the_same_user_lose_no_update(
        ray_local: None, provider: FakeProvider) -> None:
    """A user split over several rows runs on several workers at once: the store's version
    check makes the later commit reload and merge again, so nothing is lost or doubled."""
    from doxa.runs.distributed import ingest_ray, users_from

    users = [f"rayc-{uuid.uuid4().hex[:6]}-{n}" for n in range(3)]
    slices = [(0, 6), (3, 9), (6, 12), (0, 12)]
    rows = [(u, events(u, lo, hi)) for u in users for lo, hi in slices]

    summary = await asyncio.to_thread(
        ingest_ray, users_from(rows), store=PG_URL or "", model="openai/fake",
        base_url=provider.base_url, api_key="x", users_per_task=1, workers=2,
        engine_options={"retry": RETRY})

    assert summary.errors == {}
    assert (summary.users, summary.rows) == (3, 12)
    assert summary.workers >= 2, "the rows were spread over more than one worker"
    assert summary.commit_retries > 0, "two workers did commit the same user at once"
    await assert_same_as_serial(
        {u: [events(u, lo, hi) for lo, hi in slices] for u in users}, provider)


async def test_cli_ingest_with_ray(ray_local: None, provider: FakeProvider,
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = f"raycli-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events(user, 0, 3)))
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    args = ["ingest", str(path), "--ray", "--db", PG_URL or "", "--model", "openai/fake",
            "--base-url", provider.base_url, "--json"]

    out = await asyncio.to_thread(CliRunner().invoke, app, args)

    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert (report["users"], report["events_new"], report["errors"]) == (1, 3, {})
    shared = engine(PG_URL or "", provider)
    assert len((await shared.model(user)).records) == 3
    await shared.close()


async def test_cli_ray_refuses_a_file_with_an_invalid_line(ray_local: None,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = events(f"raybad-{uuid.uuid4().hex[:6]}", 0, 2)
    path.write_text("".join(json.dumps(e) + "\n" for e in good) + '{"id": "x9"}\n')

    out = await asyncio.to_thread(CliRunner().invoke, app, [
        "ingest", str(path), "--ray", "--db", PG_URL or "", "--model", "openai/fake"],
        env={"OPENAI_API_KEY": "sk-test"})  # credentials are checked before the file is read

    assert out.exit_code == 1
    assert "1 invalid event(s)" in out.output and "nothing was ingested" in out.output
