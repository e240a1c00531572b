"""`doxa serve` as a real process on loopback, with the fake provider behind it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from doxa.server.auth import hash_key
from doxa.store import SqliteStore
from doxa.testing.fake_provider import FakeProvider

KEY = "process-test-key-0123456789"
EVENTS = [
    {"id": "e1", "type": "page_view", "timestamp": "2026-03-02T10:00:00Z",
     "properties": {"path": "/pricing"}},
    {"id": "e2", "type": "chat_message", "timestamp": "2026-03-02T10:31:00Z",
     "text": "I need to show my CFO this pays back within 6 months"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOXA_API_KEYS", "DOXA_API_KEYS_FILE", "OPENAI_BASE_URL")}
    return env | {"OPENAI_API_KEY": "not-a-real-key", "PYTHONUNBUFFERED": "1"} | extra


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider().start()
    yield provider
    await provider.stop()


async def wait_until_up(base: str, proc: asyncio.subprocess.Process,
                        seconds: float = 30) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(int(seconds * 10)):
            if proc.returncode is not None:
                raise AssertionError(f"doxa serve exited with {proc.returncode}")
            try:
                if (await client.get(f"{base}/v1/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("doxa serve did not come up")


@asynccontextmanager
async def serving(fake: FakeProvider, tmp_path: Path, db: Path) -> AsyncIterator[
        tuple[httpx.AsyncClient, asyncio.subprocess.Process]]:
    """`doxa serve` on a free loopback port with one tenant (acme, key KEY); a client
    for it. On the way out the server gets SIGTERM and must exit cleanly."""
    keys = tmp_path / "keys"
    keys.write_text(f"# the process test's tenant\nacme {hash_key(KEY)}\n", encoding="utf-8")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "doxa", "serve", "--db", str(db), "--host", "127.0.0.1",
        "--port", str(port), "--model", "openai/fake", "--base-url", fake.base_url,
        "--keys", str(keys), "--log-level", "warning",
        env=serve_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_up(base, proc)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            yield client, proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
        except TimeoutError:
            proc.kill()
            raise
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), stderr.decode()
    assert b"doxa serving openai/fake" in stderr


async def test_serve_ingests_over_http_and_reads_the_model_back(
    fake: FakeProvider, tmp_path: Path,
) -> None:
    db = tmp_path / "served.db"
    async with serving(fake, tmp_path, db) as (client, _):
        ingested = await client.post("/v1/users/u-42/events", json={"events": EVENTS})
        assert ingested.status_code == 200, ingested.text
        assert ingested.json()["events_new"] == 2 and fake.stats.answered == 1
        model = (await client.get("/v1/users/u-42/model")).json()
        goals = (await client.get("/v1/users/u-42/goals",
                                  params={"min_confidence": 0.5})).json()
        refused = await client.get("/v1/users/u-42/model", headers={"Authorization": "x"})
        spec = (await client.get("/openapi.json")).json()
    assert [r["statement"] for r in model["records"]] == [
        "Said: I need to show my CFO this pays"]
    assert goals["records"][0]["evidence"][0]["event_id"] == "e2"
    assert refused.status_code == 401 and spec["info"]["title"] == "doxa"
    # What the server wrote is in the store, under the tenant's namespace.
    store = SqliteStore(db)
    try:
        assert await store.users() == ["acme/u-42"]
    finally:
        await store.close()


async def test_delete_under_a_running_server_leaves_no_copy_in_the_file_or_the_wal(
    fake: FakeProvider, tmp_path: Path,
) -> None:
    """The server keeps its connection open, so SQLite never removes the WAL on its own:
    the text of a deleted user must be gone from both files once DELETE has answered."""
    db = tmp_path / "served.db"
    wal = Path(f"{db}-wal")
    async with serving(fake, tmp_path, db) as (client, _):
        for user, pet in (("u-gone", "Ferdinand-Quokka"), ("u-kept", "Bartholomew-Wombat")):
            events = [{"id": f"e{i}", "type": "chat_message",
                       "timestamp": f"2026-03-02T10:0{i}:00Z",
                       "text": f"my cat {pet} hates the onboarding emails ({i})"}
                      for i in range(6)]
            ingested = await client.post(f"/v1/users/{user}/events", json={"events": events})
            assert ingested.status_code == 200, ingested.text
        assert occurrences(wal, b"Ferdinand-Quokka") > 0
        deleted = await client.delete("/v1/users/u-gone")
        assert deleted.status_code == 204
        for path in (db, wal):
            assert occurrences(path, b"Ferdinand-Quokka", b"u-gone") == 0, path.name
        kept = await client.get("/v1/users/u-kept/model")
        assert kept.status_code == 200 and kept.json()["records"]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def occurrences(path: Path, *words: bytes) -> int:
    data = path.read_bytes() if path.exists() else b""
    return sum(data.count(word) for word in words)


async def test_two_authorization_headers_get_400_over_the_wire(
    fake: FakeProvider, tmp_path: Path,
) -> None:
    async with serving(fake, tmp_path, tmp_path / "served.db") as (client, _):
        twice = await client.get("/v1/users/u-1/model", headers=[
            ("Authorization", "Bearer wrong-key"), ("Authorization", f"Bearer {KEY}")])
        assert twice.status_code == 400
        assert twice.json()["type"] == "urn:doxa:problem:malformed-request"


def test_serve_refuses_to_start_without_keys(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "doxa", "serve", "--db", str(tmp_path / "x.db"), "--port", "1"],
        env=serve_env(), capture_output=True, timeout=60)
    assert done.returncode == 1
    assert b"no API keys" in done.stderr


def test_new_key_prints_a_key_and_its_hashed_line() -> None:
    done = subprocess.run([sys.executable, "-m", "doxa", "serve", "--new-key", "acme"],
                          env=serve_env(), capture_output=True, timeout=60, check=True)
    lines = done.stdout.decode().splitlines()
    key = lines[0].rsplit(" ", 1)[1]
    assert lines[1].endswith(f"acme {hash_key(key)} read,write,delete")
    assert key.startswith("doxa_") and len(key) > 40


def test_without_the_server_extra_serve_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from doxa.cli.main import app

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `doxa[server]` were missing
    done = CliRunner().invoke(app, ["serve", "--print-openapi"])
    assert done.exit_code == 1
    assert "pip install 'doxa[server]'" in done.output
