"""Erasure is final: no in-flight work brings a deleted user back, and no copy of the
user's text is left in the SQLite file or its WAL once a delete has answered."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.errors import UserErasedError
from doxa.llm.client import RetryPolicy
from doxa.model.records import UserModel
from doxa.store import Store, open_store
from doxa.store.sqlite import SqliteStore
from doxa.testing.fake_provider import FakeProvider

PG_URL = os.environ.get("DOXA_TEST_POSTGRES_URL")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MARKER = "zebra-quokka-7731"  # the deleted user's words, searched for byte by byte


def events(lo: int, hi: int, word: str = MARKER) -> list[dict[str, Any]]:
    return [{"id": f"e{i}", "type": "chat_message",
             "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
             "text": f"We need {word} number {i} before the rollout"} for i in range(lo, hi)]


class Interleaved:
    """A store that runs a test's step just before the next commit or load: a
    deterministic way to land a delete exactly between two steps of an ingest."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.before_commit: list[Callable[[], Awaitable[None]]] = []
        self.before_load: list[Callable[[], Awaitable[None]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, model: UserModel, **kwargs: Any) -> int:
        if self.before_commit:
            await self.before_commit.pop(0)()
        return await self.inner.commit(model, **kwargs)

    async def load(self, user_id: str) -> UserModel:
        if self.before_load:
            await self.before_load.pop(0)()
        return await self.inner.load(user_id)


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider().start()
    yield provider
    await provider.stop()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres" and not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must set DOXA_TEST_POSTGRES_URL (scripts/pg-test-cluster.sh)")
        pytest.skip("no DOXA_TEST_POSTGRES_URL")
    return {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'doxa.db'}",
            "postgres": PG_URL or ""}[request.param]


def engine_on(store: Store | str, fake: FakeProvider) -> Engine:
    return Engine(model="openai/fake", store=store, base_url=fake.base_url, api_key="x",
                  retry=RetryPolicy(attempts=1))


async def assert_erased(store: Store, user: str) -> None:
    exported = await store.export_user(user)
    assert (exported["records"], exported["events"], exported["ledger"]) == ([], [], [])
    assert user not in await store.users()


async def test_a_delete_landing_before_the_ingest_commits_leaves_the_user_deleted(
    fake: FakeProvider, store_url: str,
) -> None:
    """The delete lands while the ingest's extraction is in flight: its commit sees the
    model emptied (a version conflict on a user it had read), and the retry used to merge
    into the empty model and commit the user back."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    inner = open_store(store_url)
    store = Interleaved(inner)
    engine = engine_on(store, fake)  # type: ignore[arg-type]
    try:
        await engine.ingest(user, events(0, 2))
        store.before_commit.append(lambda: inner.delete_user(user))
        with pytest.raises(UserErasedError):
            await engine.ingest(user, events(2, 4))
        await assert_erased(inner, user)
        # Events sent after the delete start a new model, of those events only.
        fresh = await engine.ingest(user, events(4, 5, word="after"))
        assert fresh.events_new == 1
        model = await engine.model(user)
        assert {e for r in model.records for e in r.evidence_ids()} == {"e4"}
    finally:
        await engine.close()


async def test_a_delete_landing_between_a_conflict_and_the_retry_leaves_the_user_deleted(
    fake: FakeProvider, store_url: str,
) -> None:
    """The other order: another writer wins the first commit; the delete lands before the
    ingest reloads to merge again. The reloaded model is empty and the retry is refused."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    inner = open_store(store_url)
    store = Interleaved(inner)
    engine = engine_on(store, fake)  # type: ignore[arg-type]
    other = engine_on(inner, fake)
    try:
        await engine.ingest(user, events(0, 2))

        async def another_writer_then_arm_the_delete() -> None:
            await other.ingest(user, events(6, 7))
            store.before_load.append(lambda: inner.delete_user(user))

        store.before_commit.append(another_writer_then_arm_the_delete)
        with pytest.raises(UserErasedError):
            await engine.ingest(user, events(2, 4))
        assert not store.before_load, "the retry reloaded after the delete"
        await assert_erased(inner, user)
    finally:
        await engine.close()


async def test_a_backfill_merge_begun_before_a_delete_is_refused(
    fake: FakeProvider, store_url: str,
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    engine = engine_on(store_url, fake)
    try:
        await engine.ingest(user, events(0, 1))
        began = await engine.generation(user)
        [pending] = await engine.pending_batches(user, events(1, 2))
        await engine.delete_user(user)
        with pytest.raises(UserErasedError):
            await engine.merge_batch(pending, None, generation=began)
        await assert_erased(engine.store, user)
    finally:
        await engine.close()


# -- no copy left in the SQLite file or its WAL ------------------------------------------------


def copies(db: Path, text: str) -> dict[str, int]:
    """How many times `text` occurs, byte for byte, in the database file and its WAL."""
    found = {}
    for path in (db, Path(f"{db}-wal")):
        found[path.name] = path.read_bytes().count(text.encode()) if path.exists() else 0
    return found


async def seed(db: Path, user: str, fake: FakeProvider, word: str = MARKER) -> None:
    engine = engine_on(f"sqlite:///{db}", fake)
    try:
        await engine.ingest(user, events(0, 6, word=word))
        assert len(await engine.model(user)) > 0
    finally:
        await engine.close()


@pytest.fixture
def upstream_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream SQLite builds leave deleted rows in free pages (`secure_delete` off);
    Debian's turns it on. The store must not depend on the build: connections made here
    start with it off, as upstream's do."""
    connect = sqlite3.connect

    def upstream_default(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        con = connect(*args, **kwargs)
        con.execute("PRAGMA secure_delete=OFF")
        return con

    monkeypatch.setattr(sqlite3, "connect", upstream_default)


UPSTREAM_DOXA = """
import runpy, sqlite3
connect = sqlite3.connect
def upstream_default(*args, **kwargs):
    con = connect(*args, **kwargs)
    con.execute("PRAGMA secure_delete=OFF")
    return con
sqlite3.connect = upstream_default
runpy.run_module("doxa", run_name="__main__")
"""


async def test_doxa_delete_leaves_no_copy_in_the_file_or_the_wal(
    fake: FakeProvider, tmp_path: Path, upstream_sqlite: None,
) -> None:
    """`doxa delete` while another process (a server, say) has the store open: the WAL is
    not removed when the CLI exits, so the delete itself must clear it."""
    db = tmp_path / "doxa.db"
    running = SqliteStore(db)
    try:
        await running.users()
        await seed(db, "u-gone", fake)
        await seed(db, "u-kept", fake, word="kept-words")
        assert sum(copies(db, MARKER).values()) > 0
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", UPSTREAM_DOXA, "delete", "u-gone", "--db",
                             str(db), "--yes"], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        assert copies(db, MARKER) == {"doxa.db": 0, "doxa.db-wal": 0}
        assert sum(copies(db, "kept-words").values()) > 0
        assert await running.users() == ["u-kept"]
    finally:
        await running.close()


async def test_a_delete_zeroes_the_rows_in_the_main_file(
    fake: FakeProvider, tmp_path: Path, upstream_sqlite: None,
) -> None:
    db = tmp_path / "doxa.db"
    await seed(db, "u-gone", fake)
    store = SqliteStore(db)
    try:
        await store._run(lambda con: con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        assert copies(db, MARKER)["doxa.db"] > 0  # the rows are in the main file now
        await store.delete_user("u-gone")
        assert copies(db, MARKER) == {"doxa.db": 0, "doxa.db-wal": 0}
    finally:
        await store.close()


async def test_a_delete_leaves_no_copy_of_the_users_buffered_events(
    fake: FakeProvider, tmp_path: Path, upstream_sqlite: None,
) -> None:
    """Events waiting in the buffer (`Engine.add`, never extracted) are erased with the
    user, from the file and the WAL, and a worker's pass afterwards finds nothing of them."""
    db = tmp_path / "doxa.db"
    engine = engine_on(f"sqlite:///{db}", fake)
    try:
        for event in events(0, 3):
            await engine.add("u-gone", event)
        await engine.add("u-kept", events(0, 1, word="kept-words")[0])
        assert sum(copies(db, MARKER).values()) > 0
        await engine.delete_user("u-gone")
        assert copies(db, MARKER) == {"doxa.db": 0, "doxa.db-wal": 0}
        assert sum(copies(db, "kept-words").values()) > 0
        report = await engine.flush(force=True)
        assert report.reasons == {"u-kept": "forced"}
        assert (await engine.model("u-gone")).records == ()
    finally:
        await engine.close()


# -- files readable by their owner only --------------------------------------------------------


async def test_store_files_are_created_readable_by_the_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "new" / "doxa.db"
        store = SqliteStore(db)
        await store.cache_put("k", "u", "v")
        try:
            for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        finally:
            await store.close()
    finally:
        os.umask(old)


# -- a new file opened by several processes at once --------------------------------------------

OPENERS = 8
ROUNDS = 50
OPENER = """
import sys
from doxa.store.sqlite import SqliteStore
folder, rounds = sys.argv[1], int(sys.argv[2])
for n in range(rounds):
    sys.stdin.readline()  # every opener is released for the round at once
    try:
        SqliteStore(f"{folder}/round-{n}.db")._db.close()
        print("ok", flush=True)
    except Exception as exc:
        print(f"failed: {exc}", flush=True)
"""


def test_eight_processes_opening_a_new_file_at_once_never_fail(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(tmp_path), str(ROUNDS)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(OPENERS)]
    failures = []
    try:
        for n in range(ROUNDS):
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in procs:
                assert proc.stdout is not None
                answer = proc.stdout.readline().strip()
                if answer != "ok":
                    failures.append(f"round {n}: {answer}")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert failures == []
    con = sqlite3.connect(tmp_path / "round-0.db")
    assert "commit_id" in {r[1] for r in con.execute("PRAGMA table_info(users)")}
    con.close()
