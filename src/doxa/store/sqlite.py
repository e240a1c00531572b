"""SQLite store: one file, WAL, one transaction per commit, a model version per user.

Each record is kept whole as JSON (what `load` reads) with its evidence and revisions also
as rows (what SQL, audits and `delete_user` scans see). A commit writes only the records
whose content changed, so its cost follows the change, not the size of the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from doxa.errors import StoreConflictError, StoreError
from doxa.events import Event
from doxa.records import Change, Record, UserModel

T = TypeVar("T")
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  user_id TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
  context TEXT NOT NULL, confidence REAL NOT NULL, statement TEXT NOT NULL,
  content_hash TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (user_id, record_id));
CREATE TABLE IF NOT EXISTS evidence (
  user_id TEXT NOT NULL, record_id TEXT NOT NULL, event_id TEXT NOT NULL,
  polarity TEXT NOT NULL, basis TEXT NOT NULL, quote TEXT NOT NULL, observed_at TEXT NOT NULL,
  batch_id TEXT NOT NULL, PRIMARY KEY (user_id, record_id, event_id),
  FOREIGN KEY (user_id, record_id) REFERENCES records (user_id, record_id) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS revisions (
  user_id TEXT NOT NULL, record_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (user_id, record_id, seq),
  FOREIGN KEY (user_id, record_id) REFERENCES records (user_id, record_id) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS events (
  user_id TEXT NOT NULL, event_id TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (user_id, event_id));
CREATE TABLE IF NOT EXISTS ledger (
  user_id TEXT NOT NULL, event_id TEXT NOT NULL, processed_at TEXT NOT NULL,
  PRIMARY KEY (user_id, event_id));
CREATE TABLE IF NOT EXISTS cache (
  key TEXT PRIMARY KEY, user_id TEXT NOT NULL, value TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cache_user ON cache (user_id);
"""
USER_TABLES = ("records", "evidence", "revisions", "events", "ledger", "cache", "users")


def content_hash(record: Record) -> str:
    return hashlib.sha256(record.model_dump_json().encode()).hexdigest()[:24]


class SqliteStore:
    """The default store. Safe for several processes on one machine (WAL + busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(SCHEMA)
            if not self._db.execute("SELECT 1 FROM schema_version").fetchone():
                self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._db)
        return await asyncio.to_thread(locked)

    async def load(self, user_id: str) -> UserModel:
        def read(db: sqlite3.Connection) -> UserModel:
            row = db.execute("SELECT version FROM users WHERE user_id = ?", (user_id,)).fetchone()
            records = tuple(Record.model_validate_json(d) for (d,) in db.execute(
                "SELECT data FROM records WHERE user_id = ? ORDER BY record_id", (user_id,)))
            cited = sorted({e.event_id for r in records for e in r.evidence})
            events = _select_events(db, user_id, cited)
            return UserModel(user_id=user_id, records=records, version=row[0] if row else 0,
                             events=events)
        return await self._run(read)

    async def processed(self, user_id: str, event_ids: Iterable[str]) -> set[str]:
        ids = list(event_ids)

        def read(db: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                found |= {r[0] for r in db.execute(
                    f"SELECT event_id FROM ledger WHERE user_id = ? AND event_id IN ({marks})",
                    (user_id, *chunk))}
            return found
        return await self._run(read)

    async def commit(self, model: UserModel, *, expected_version: int,
                     changes: Sequence[Change], events: Sequence[Event],
                     processed_ids: Sequence[str]) -> int:
        now = datetime.now(UTC).isoformat()

        def write(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                version = _check_version(db, model.user_id, expected_version)
                _write_records(db, model)
                db.executemany(
                    "INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
                    [(model.user_id, e.id, e.model_dump_json()) for e in events])
                db.executemany(
                    "INSERT OR IGNORE INTO ledger VALUES (?, ?, ?)",
                    [(model.user_id, eid, now) for eid in processed_ids])
                db.execute("INSERT INTO users VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE "
                           "SET version = excluded.version", (model.user_id, version + 1))
                db.execute("COMMIT")
                return version + 1
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return await self._run(write)

    async def events(self, user_id: str, event_ids: Iterable[str]) -> dict[str, Event]:
        ids = list(event_ids)
        return await self._run(lambda db: _select_events(db, user_id, ids))

    async def users(self) -> list[str]:
        return await self._run(lambda db: [r[0] for r in db.execute(
            "SELECT user_id FROM users UNION SELECT user_id FROM ledger ORDER BY 1")])

    async def delete_user(self, user_id: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                for table in USER_TABLES:
                    db.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        await self._run(delete)

    async def export_user(self, user_id: str) -> dict[str, Any]:
        model = await self.load(user_id)

        def read(db: sqlite3.Connection) -> dict[str, Any]:
            events = [json.loads(d) for (d,) in db.execute(
                "SELECT data FROM events WHERE user_id = ? ORDER BY event_id", (user_id,))]
            ledger = [r[0] for r in db.execute(
                "SELECT event_id FROM ledger WHERE user_id = ? ORDER BY event_id", (user_id,))]
            return {"user_id": user_id, "version": model.version,
                    "records": [r.model_dump(mode="json") for r in model.records],
                    "events": events, "ledger": ledger}
        return await self._run(read)

    async def cache_get(self, key: str) -> str | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
            return str(row[0]) if row else None
        return await self._run(read)

    async def cache_put(self, key: str, user_id: str, value: str) -> None:
        now = datetime.now(UTC).isoformat()
        await self._run(lambda db: db.execute(
            "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", (key, user_id, value, now)))

    async def close(self) -> None:
        await self._run(lambda db: db.close())


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _select_events(db: sqlite3.Connection, user_id: str, ids: Sequence[str]) -> dict[str, Event]:
    found: dict[str, Event] = {}
    for chunk in _chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        for eid, data in db.execute(
                f"SELECT event_id, data FROM events WHERE user_id = ? AND event_id IN ({marks})",
                (user_id, *chunk)):
            found[eid] = Event.model_validate_json(data)
    return found


def _check_version(db: sqlite3.Connection, user_id: str, expected: int) -> int:
    row = db.execute("SELECT version FROM users WHERE user_id = ?", (user_id,)).fetchone()
    found = row[0] if row else 0
    if found != expected:
        raise StoreConflictError(user_id, expected, found)
    return int(found)


def _write_records(db: sqlite3.Connection, model: UserModel) -> None:
    """Insert new, replace changed and delete removed records; leave the rest untouched."""
    user = model.user_id
    stored = dict(db.execute("SELECT record_id, content_hash FROM records WHERE user_id = ?",
                             (user,)).fetchall())
    current = {r.id: r for r in model.records}
    for gone in set(stored) - set(current):
        db.execute("DELETE FROM records WHERE user_id = ? AND record_id = ?", (user, gone))
    for record in current.values():
        digest = content_hash(record)
        if stored.get(record.id) == digest:
            continue
        db.execute("DELETE FROM records WHERE user_id = ? AND record_id = ?", (user, record.id))
        db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            user, record.id, record.kind, record.status, record.context, record.confidence,
            record.statement, digest, record.model_dump_json()))
        db.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            (user, record.id, e.event_id, e.polarity, e.basis, e.quote,
             e.observed_at.isoformat(), e.batch_id) for e in record.evidence])
        db.executemany("INSERT INTO revisions VALUES (?, ?, ?, ?)", [
            (user, record.id, i, rev.model_dump_json()) for i, rev in enumerate(record.history)])
