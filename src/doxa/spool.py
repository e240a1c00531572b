"""Group a file's events by user without holding the file in memory.

A file of events is usually ordered by time, not by user, yet one user's events must be
ingested together and in order. The spool streams the file once into a temporary SQLite
table (validating every line on the way) and hands users out one at a time, so memory
stays flat however large the file is.

The spool holds raw events (personal data that `doxa delete` cannot reach), so it must not
outlive its process: it lives in a private (0700) directory as a 0600 file; SIGTERM, like
Ctrl-C, unwinds the process so the spool is removed on the way out; and a process killed
outright (SIGKILL, power loss) leaves a directory whose lock nobody holds any more, which
the next spool created by the same user sweeps away.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from doxa.errors import InvalidEventError, InvalidEventsError
from doxa.events import Event, iter_file
from doxa.store.sqlite import create_private

if sys.platform != "win32":
    import fcntl

log = logging.getLogger(__name__)
MAX_REPORTED = 1000
_CHUNK = 5000
SPOOL_PREFIX = "doxa-spool-"
LOCK_NAME = "lock"


class UserSpool:
    """Validated events of one file, grouped by user, on disk. Use as a context manager."""

    def __init__(self) -> None:
        sweep_stale_spools()
        self.dir = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX))  # mode 0700
        self._lock = _hold_lock(self.dir)
        self._restore_sigterm = _exit_on_sigterm()
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
                  default_user_id: str | None = None, only_user: str | None = None) -> UserSpool:
        """Stream and validate the file; refuse it whole (nothing spooled) if any line is
        invalid, unless `skip_invalid`."""
        spool = cls()
        try:
            spool._fill(path, default_user_id, only_user)
        except BaseException:
            spool.close()
            raise
        if spool.invalid and not skip_invalid:
            errors = spool.skipped
            spool.close()
            raise InvalidEventsError(errors, source=str(path))
        return spool

    def _fill(self, path: str | Path, default_user_id: str | None,
              only_user: str | None) -> None:
        rows: list[tuple[str, str, str]] = []
        for item in iter_file(path, default_user_id=default_user_id):
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
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        self._restore_sigterm()

    def __enter__(self) -> UserSpool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _exit_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM unwind the process as SystemExit (what Ctrl-C's KeyboardInterrupt
    already does), so `with` blocks and `close` run; returns what puts the old handler back.

    Only from the main thread (the only one Python delivers signals to), and only over the
    default handler: a program that handles SIGTERM itself keeps its own handler."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        return lambda: None

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, stop)
    return restore


def _hold_lock(folder: Path) -> int | None:
    """Lock the spool directory for as long as this process lives (the kernel drops the
    lock when the process dies, however it dies). The lock file is locked under a temporary
    name and then renamed into place, so a sweeper never sees an unlocked live spool."""
    if sys.platform == "win32":
        return None
    staging = folder / (LOCK_NAME + ".new")
    fd = os.open(staging, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, str(os.getpid()).encode())
    os.replace(staging, folder / LOCK_NAME)
    return fd


def sweep_stale_spools(root: str | Path | None = None) -> list[Path]:
    """Remove the spools of processes that are gone: this user's `doxa-spool-*` directories
    whose lock nobody holds. A directory without a lock file (being created, or made by an
    older doxa) is left alone. Returns what was removed."""
    if sys.platform == "win32":
        return []
    removed: list[Path] = []
    base = Path(root or tempfile.gettempdir())
    for folder in base.glob(SPOOL_PREFIX + "*"):
        try:
            if folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # held: its process is alive
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
        log.info("removed the spool %s left by a process that is gone", folder)
        removed.append(folder)
    return removed
