"""Group a file's events by user without holding the file in memory.

A file of events is usually ordered by time, not by user, yet one user's events must be
ingested together and in order. The spool streams the file once into a temporary SQLite
table (validating every line on the way) and hands users out one at a time, so memory
stays flat however large the file is.

The spool holds raw events (personal data that `doxa delete` cannot reach), so it must not
outlive its process: it is a 0600 file in a `PrivateDir` (0700, swept by the next run when
its process is killed outright), and while a spool is open SIGTERM unwinds the process as
Ctrl-C does, so the spool is removed on the way out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from doxa.errors import InvalidEventError, InvalidEventsError
from doxa.events.formats import iter_events
from doxa.events.parse import Event
from doxa.workdir import PrivateDir, create_private, exit_on_sigterm

MAX_REPORTED = 1000
_CHUNK = 5000


class UserSpool:
    """Validated events of one file, grouped by user, on disk. Use as a context manager."""

    def __init__(self) -> None:
        self._dir = PrivateDir("doxa-spool-")
        self.dir = self._dir.path
        self._restore_sigterm = exit_on_sigterm()
        path = self.dir / "spool.db"
        create_private(str(path))
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE events (user_id TEXT, event_id TEXT, data TEXT, "
                         "PRIMARY KEY (user_id, event_id))")
        self.skipped: list[InvalidEventError] = []
        self.invalid = 0
        self.events = 0

    @classmethod
    def from_file(cls, path: str | Path, *, skip_invalid: bool = False,
                  default_user_id: str | None = None, only_user: str | None = None,
                  fmt: str = "doxa") -> UserSpool:
        """Stream and validate the file, read in format `fmt` (doxa.events.formats); refuse
        it whole (nothing spooled) if any line is invalid, unless `skip_invalid`."""
        spool = cls()
        try:
            spool._fill(path, default_user_id, only_user, fmt)
        except BaseException:
            spool.close()
            raise
        if spool.invalid and not skip_invalid:
            errors = spool.skipped
            spool.close()
            raise InvalidEventsError(errors, source=str(path))
        return spool

    def _fill(self, path: str | Path, default_user_id: str | None,
              only_user: str | None, fmt: str) -> None:
        rows: list[tuple[str, str, str]] = []
        for item in iter_events(path, fmt, default_user_id=default_user_id):
            if isinstance(item, InvalidEventError):
                self._invalid(item)
                continue
            if only_user is not None and item.user_id != only_user:
                continue
            rows.append((item.user_id, item.id, item.model_dump_json()))
            if len(rows) >= _CHUNK:
                self._insert(rows, str(path))
                rows = []
        self._insert(rows, str(path))

    def _invalid(self, error: InvalidEventError) -> None:
        self.invalid += 1
        if len(self.skipped) < MAX_REPORTED:
            self.skipped.append(error)

    def _insert(self, rows: list[tuple[str, str, str]], source: str) -> None:
        for user_id, event_id, data in rows:
            cur = self._db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?)",
                                   (user_id, event_id, data))
            if cur.rowcount:
                self.events += 1
                continue
            (stored,) = self._db.execute(
                "SELECT data FROM events WHERE user_id = ? AND event_id = ?",
                (user_id, event_id)).fetchone()
            if Event.model_validate_json(stored) != Event.model_validate_json(data):
                self._invalid(InvalidEventError(
                    f"event id '{event_id}' is used twice for user '{user_id}' with different "
                    "content", field="id", source=source))
        self._db.commit()

    def user_count(self) -> int:
        return int(self._db.execute("SELECT count(DISTINCT user_id) FROM events").fetchone()[0])

    def users(self) -> Iterator[tuple[str, list[Event]]]:
        """Each user with their events, one user at a time, users in sorted order."""
        cursor = self._db.execute("SELECT user_id, data FROM events ORDER BY user_id")
        current: str | None = None
        bucket: list[Event] = []
        for user_id, data in cursor:
            if user_id != current and current is not None:
                yield current, bucket
                bucket = []
            current = user_id
            bucket.append(Event.model_validate_json(data))
        if current is not None:
            yield current, bucket

    def close(self) -> None:
        self._db.close()
        self._dir.remove()
        self._restore_sigterm()

    def __enter__(self) -> UserSpool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

