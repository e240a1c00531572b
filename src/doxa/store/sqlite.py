"""SQLite store: one file, WAL, one transaction per commit, a model version per user.

Each record is kept whole as JSON (what `load` reads) with its evidence and revisions also
as rows (what SQL, audits and `delete_user` scans see). A commit writes only the records
whose content changed, so its cost follows the change, not the size of the model.

Parsing a large model on every ingest or read would dominate doxa's own overhead, so the
store keeps the last model it loaded or committed per user (`doxa.store.snapshots`)
together with each record's content hash. A load reuses it only when the user's row still
carries the same version *and* commit id, which every commit from any process replaces:
another process's write, a delete or a re-created user can never be served from a stale
snapshot.

The file holds personal data, so it is created 0600 (its -wal and -shm follow), deleted
rows are overwritten with zeros (`secure_delete`), and a delete ends with a TRUNCATE
checkpoint: otherwise the WAL of a long-running process keeps every older copy of the
deleted user's pages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence, Set
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from doxa.calibration.outcomes import OutcomeCount
from doxa.core.flush import BufferSummary
from doxa.errors import BufferClaimLostError, StoreConflictError, StoreError, UserErasedError
from doxa.events.parse import Event
from doxa.model.records import Change, Record, UserModel, cited_event_ids
from doxa.store.base import BufferClaim, erasure_key
from doxa.store.snapshots import (
    EventDigests,
    RecordHashes,
    Snapshots,
    as_committed,
    assemble,
    event_digest,
    read_events,
    stale_ids,
)
from doxa.store.tables import (
    OUTCOME_COLUMNS,
    SCHEMA_VERSION,
    SQLITE,
    USER_TABLES,
    add_outcomes_sql,
    buffer_summary,
    buffer_summary_query,
    buffer_time,
    content_hash,
    outcome_count,
    outcome_row,
    schema,
)
from doxa.workdir import create_private

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Snapshot(NamedTuple):
    """A model as committed, with the content hash of each of its record objects."""

    version: int
    commit_id: str
    model: UserModel
    hashes: RecordHashes
    event_digests: EventDigests


class SqliteStore:
    """The default store. Safe for several processes on one machine (WAL + busy timeout)."""

    def __init__(self, path: str | Path, *, synchronous: str = "normal") -> None:
        self.path = str(path)
        if synchronous not in ("normal", "full"):
            raise StoreError(f"synchronous must be normal or full, not {synchronous!r}")
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                create_private(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA busy_timeout=30000")
            _enter_wal(self._db)
            # In WAL mode `normal` skips the fsync per commit (the checkpoint still syncs):
            # a killed process loses nothing, power loss may lose the last commits.
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA foreign_keys=ON")
            # Deleted rows are overwritten with zeros, not left in free pages (upstream
            # SQLite's default is off): a deleted user's text does not linger in the file.
            self._db.execute("PRAGMA secure_delete=ON")
            _set_up_schema(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._snapshots: Snapshots[_Snapshot] = Snapshots()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._db)
        return await asyncio.to_thread(locked)

    async def load(self, user_id: str) -> UserModel:
        def read(db: sqlite3.Connection) -> UserModel:
            known = self._snapshots.current(user_id, *_commit_of(db, user_id))
            if known is not None:
                return known.model
            previous = self._snapshots.held(user_id)  # an older commit's: reused by hash
            # The row and the records it names, in one read transaction: another process's
            # commit landing between the reads must not pair version v with v+1's rows.
            db.execute("BEGIN")
            try:
                version, commit_id = _commit_of(db, user_id)
                listed = db.execute("SELECT record_id, content_hash FROM records "
                                    "WHERE user_id = ? ORDER BY record_id",
                                    (user_id,)).fetchall()
                held = previous.hashes if previous is not None else {}
                parsed = {rid: Record.model_validate_json(data) for rid, data in
                          _select_rows(db, "records", "record_id", user_id,
                                       stale_ids(listed, held))}
                records, hashes = assemble(listed, held, parsed)
                read_back = read_events(
                    _select_rows(db, "events", "event_id", user_id,
                                 sorted(cited_event_ids(records))),
                    previous.model.events if previous is not None else {},
                    previous.event_digests if previous is not None else {})
            finally:
                db.execute("COMMIT")
            model = UserModel(user_id=user_id, records=records, version=version,
                              events=read_back.events)
            if commit_id:
                self._snapshots.remember(_Snapshot(version, commit_id, model, hashes,
                                                   read_back.digests))
            else:
                self._snapshots.forget(user_id)
            return model
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

    async def generation(self, user_id: str) -> int:
        return await self._run(lambda db: _generation(db, user_id))

    async def commit(self, model: UserModel, *, expected_version: int,
                     changes: Sequence[Change], events: Sequence[Event],
                     processed_ids: Sequence[str], generation: int = 0,
                     claim: BufferClaim | None = None,
                     outcomes: Sequence[OutcomeCount] = ()) -> int:
        now = datetime.now(UTC).isoformat()

        def write(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                erased = _generation(db, model.user_id)
                if erased != generation:
                    raise UserErasedError(model.user_id, generation, erased)
                version, old_commit = _commit_of(db, model.user_id)
                if version != expected_version:
                    raise StoreConflictError(model.user_id, expected_version, version)
                if claim is not None and _consume(db, claim) != len(claim.events):
                    raise BufferClaimLostError(model.user_id)
                known = self._snapshots.current(model.user_id, version, old_commit)
                hashes = _write_records(db, model, known)
                written = [(model.user_id, e.id, e.model_dump_json()) for e in events]
                db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?)", written)
                db.executemany(
                    "INSERT OR IGNORE INTO ledger VALUES (?, ?, ?)",
                    [(model.user_id, eid, now) for eid in processed_ids])
                db.executemany(add_outcomes_sql("?"), [outcome_row(c) for c in outcomes])
                commit_id = uuid.uuid4().hex
                db.execute("INSERT INTO users (user_id, version, commit_id) VALUES (?, ?, ?) "
                           "ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, "
                           "commit_id = excluded.commit_id",
                           (model.user_id, version + 1, commit_id))
                db.execute("COMMIT")
            except BaseException:
                self._snapshots.forget(model.user_id)
                db.execute("ROLLBACK")
                raise
            if known is not None:
                committed = as_committed(model, known.model, events, version + 1)
                digests = known.event_digests | {eid: event_digest(data)
                                                 for _, eid, data in written}
                self._snapshots.remember(_Snapshot(
                    version + 1, commit_id, committed, hashes,
                    {eid: digests[eid] for eid in committed.events if eid in digests}))
            else:
                self._snapshots.forget(model.user_id)
            return version + 1
        return await self._run(write)

    async def events(self, user_id: str, event_ids: Iterable[str]) -> dict[str, Event]:
        ids = list(event_ids)
        return await self._run(lambda db: _select_events(db, user_id, ids))

    async def users(self) -> list[str]:
        return await self._run(lambda db: [r[0] for r in db.execute(
            "SELECT user_id FROM users UNION SELECT user_id FROM ledger ORDER BY 1")])

    async def outcome_counts(self, user_id: str | None = None) -> list[OutcomeCount]:
        where, args = ("WHERE user_id = ? ", (user_id,)) if user_id is not None else ("", ())
        return await self._run(lambda db: [outcome_count(row) for row in db.execute(
            f"SELECT {OUTCOME_COLUMNS} FROM outcome_counts {where}"
            "ORDER BY user_id, profile, model, prompt_version, kind, bin", args)])

    async def delete_user(self, user_id: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            self._snapshots.forget(user_id)
            try:
                db.execute("INSERT INTO erasures VALUES (?, 1) ON CONFLICT (user_key) "
                           "DO UPDATE SET generation = generation + 1", (erasure_key(user_id),))
                for table in USER_TABLES:
                    db.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            # The WAL still holds the pages as they were before the delete: copy the zeroed
            # pages into the file and truncate the WAL, so no copy of the user is left in it.
            [(busy, _, _)] = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            if busy:
                log.warning("%s: a reader kept the WAL from being truncated after a delete; "
                            "the next checkpoint removes the deleted user's old pages",
                            self.path)
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
        exported = await self._run(read)
        return exported | {"outcome_counts": [c.model_dump(mode="json")
                                              for c in await self.outcome_counts(user_id)]}

    async def cache_get(self, key: str) -> str | None:
        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
            return str(row[0]) if row else None
        return await self._run(read)

    async def cache_put(self, key: str, user_id: str, value: str, *,
                        generation: int = 0) -> None:
        now = datetime.now(UTC).isoformat()
        await self._run(lambda db: db.execute(
            "INSERT OR REPLACE INTO cache SELECT ?, ?, ?, ? WHERE coalesce((SELECT generation "
            "FROM erasures WHERE user_key = ?), 0) = ?",
            (key, user_id, value, now, erasure_key(user_id), generation)))

    async def cache_entries(self, *, page: int = 500) -> AsyncIterator[tuple[str, str, str]]:
        """Every cached answer as (key, user_id, value), in key order: what `doxa eval
        export-cache` writes to a shipped file. Read a page at a time (by key, not offset),
        so a large cache is never held whole and each page is one short read."""
        def read(after: str) -> Callable[[sqlite3.Connection], list[tuple[str, str, str]]]:
            return lambda db: [(str(k), str(u), str(v)) for k, u, v in db.execute(
                "SELECT key, user_id, value FROM cache WHERE key > ? ORDER BY key LIMIT ?",
                (after, page))]

        after = ""
        while True:
            rows = await self._run(read(after))
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = rows[-1][0]

    async def buffer_add(self, entries: Sequence[tuple[Event, int]], *, now: datetime) -> int:
        at = buffer_time(now)

        def write(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                added = 0
                for event, tokens in entries:
                    added += db.execute(
                        "INSERT OR IGNORE INTO buffer SELECT ?, ?, ?, ?, ?, NULL, NULL, ? "
                        "WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE user_id = ? "
                        "AND event_id = ?)",
                        (event.user_id, event.id, event.type, tokens, at, event.model_dump_json(),
                         event.user_id, event.id)).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return added
        return await self._run(write)

    async def buffer_summaries(self, *, now: datetime,
                               high_signal_types: Set[str]) -> list[BufferSummary]:
        sql, params = buffer_summary_query(lambda name: f":{name}", now, high_signal_types)
        return await self._run(lambda db: [buffer_summary(r) for r in db.execute(sql, params)])

    async def buffer_claim(self, user_id: str, token: str, *, now: datetime,
                           until: datetime) -> BufferClaim:
        def write(db: sqlite3.Connection) -> BufferClaim:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("UPDATE buffer SET claim = ?, claimed_until = ? WHERE user_id = ? "
                           "AND (claim IS NULL OR claimed_until < ?)",
                           (token, buffer_time(until), user_id, buffer_time(now)))
                rows = db.execute("SELECT data FROM buffer WHERE user_id = ? AND claim = ? "
                                  "ORDER BY event_id", (user_id, token)).fetchall()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return BufferClaim(user_id, token,
                               tuple(Event.model_validate_json(r[0]) for r in rows))
        return await self._run(write)

    async def buffer_renew(self, token: str, *, until: datetime) -> int:
        return await self._run(lambda db: db.execute(
            "UPDATE buffer SET claimed_until = ? WHERE claim = ?",
            (buffer_time(until), token)).rowcount)

    async def buffer_consume(self, claim: BufferClaim) -> int:
        return await self._run(lambda db: _consume(db, claim))

    async def close(self) -> None:
        await self._run(lambda db: db.close())


def _enter_wal(db: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """Switch to WAL (it stays set in the file). On a new file several processes switch
    at once, and SQLite answers "database is locked" to the losers at once, without the
    busy timeout: wait a moment and try again, as the busy timeout would."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.005, 0.05))


def _set_up_schema(db: sqlite3.Connection) -> None:
    """Create what is missing, in one write transaction: several processes opening a new
    file at once each wait their turn, and all but the first find everything in place."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in schema(SQLITE):
            db.execute(statement)
        columns = {r[1] for r in db.execute("PRAGMA table_info(users)")}
        if "commit_id" not in columns:  # stores made before snapshots existed
            db.execute("ALTER TABLE users ADD COLUMN commit_id TEXT")
        if not db.execute(f"SELECT 1 FROM {SQLITE.version_table}").fetchone():
            db.execute(f"INSERT INTO {SQLITE.version_table} VALUES (?)", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _consume(db: sqlite3.Connection, claim: BufferClaim) -> int:
    """Delete the buffered rows `claim` still holds; how many there were."""
    return db.execute("DELETE FROM buffer WHERE user_id = ? AND claim = ?",
                      (claim.user_id, claim.token)).rowcount


def _commit_of(db: sqlite3.Connection, user_id: str) -> tuple[int, str]:
    """The user's current version and commit id ((0, "") for a user never committed)."""
    row = db.execute("SELECT version, commit_id FROM users WHERE user_id = ?",
                     (user_id,)).fetchone()
    return (int(row[0]), row[1] or "") if row else (0, "")


def _generation(db: sqlite3.Connection, user_id: str) -> int:
    row = db.execute("SELECT generation FROM erasures WHERE user_key = ?",
                     (erasure_key(user_id),)).fetchone()
    return int(row[0]) if row else 0


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _select_rows(db: sqlite3.Connection, table: str, key: str, user_id: str,
                 ids: Sequence[str]) -> list[tuple[str, str]]:
    """(id, data) of the user's `table` rows with these ids (`table` and `key` are this
    module's constants, never input)."""
    found: list[tuple[str, str]] = []
    for chunk in _chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        found += db.execute(f"SELECT {key}, data FROM {table} WHERE user_id = ? "
                            f"AND {key} IN ({marks})", (user_id, *chunk)).fetchall()
    return found


def _select_events(db: sqlite3.Connection, user_id: str, ids: Sequence[str]) -> dict[str, Event]:
    return {eid: Event.model_validate_json(data)
            for eid, data in _select_rows(db, "events", "event_id", user_id, ids)}


def _write_records(db: sqlite3.Connection, model: UserModel,
                   snapshot: _Snapshot | None) -> dict[str, tuple[Record, str]]:
    """Insert new, replace changed and delete removed records; leave the rest untouched.

    `snapshot` is the committed version this model was merged from, with the hash of each
    of its record objects. Merge keeps unchanged records as those very objects, so only the
    other objects are hashed and compared, and a removed record is looked for only when
    the counts say one is gone. Returns the hashes of the model now committed.
    """
    user = model.user_id
    known: dict[str, tuple[Record, str]] | None = None
    if snapshot is None:
        stored = dict(db.execute("SELECT record_id, content_hash FROM records WHERE user_id = ?",
                                 (user,)).fetchall())
        changed = list(model.records)
        hashes: dict[str, tuple[Record, str]] = {}
    else:
        known = snapshot.hashes
        changed = model.views.difference(snapshot.model.records, model.records)[1]
        stored = {r.id: known[r.id][1] for r in changed if r.id in known}
        hashes = dict(known)
    still_there = len(model.records) - len(changed) + len(stored)
    if known is None or still_there != len(known):  # some record is gone: find which
        for rid in set(known if known is not None else stored) - {r.id for r in model.records}:
            db.execute("DELETE FROM records WHERE user_id = ? AND record_id = ?", (user, rid))
            hashes.pop(rid, None)
    for record in changed:
        seen = known.get(record.id) if known is not None else None
        digest = content_hash(record)
        hashes[record.id] = (record, digest)
        if stored.get(record.id) == digest:
            continue
        row = (record.kind, record.status, record.context, record.confidence,
               record.statement, digest, record.model_dump_json())
        before = seen[0] if seen else None
        if before is not None and _extends(before.evidence, record.evidence) and _extends(
                before.history, record.history):
            # The usual change: a record gained evidence and a revision. Both are append-only,
            # so only the new rows are written, not the record's whole past again.
            db.execute("UPDATE records SET kind = ?, status = ?, context = ?, confidence = ?, "
                       "statement = ?, content_hash = ?, data = ? "
                       "WHERE user_id = ? AND record_id = ?", (*row, user, record.id))
            links = record.evidence[len(before.evidence):]
            revisions = list(enumerate(record.history))[len(before.history):]
        else:
            db.execute("DELETE FROM records WHERE user_id = ? AND record_id = ?",
                       (user, record.id))
            db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (user, record.id, *row))
            links, revisions = record.evidence, list(enumerate(record.history))
        db.executemany("INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            (user, record.id, e.event_id, e.polarity, e.basis, e.quote,
             e.observed_at.isoformat(), e.batch_id) for e in links])
        db.executemany("INSERT INTO revisions VALUES (?, ?, ?, ?)", [
            (user, record.id, i, rev.model_dump_json()) for i, rev in revisions])
    return hashes


def _extends(before: tuple[Any, ...], after: tuple[Any, ...]) -> bool:
    return len(after) >= len(before) and after[:len(before)] == before
