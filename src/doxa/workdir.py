"""Private temporary directories that do not outlive their process.

doxa's CLI keeps personal data in temporary files while it runs: the spool of a file's raw
events (`doxa ingest`, `doxa backfill`) and a backfill round's rendered requests. None of it
is reachable by `doxa delete`, so none of it may stay behind. A `PrivateDir` is made 0700
by `mkdtemp` and holds an flock on a lock file inside it for as long as its process lives;
the kernel drops the lock however the process ends (SIGKILL, a crash), so every new
`PrivateDir` first sweeps away this user's doxa directories whose lock nobody holds.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

if sys.platform != "win32":
    import fcntl

log = logging.getLogger(__name__)
PREFIXES = ("doxa-spool-", "doxa-backfill-")
LOCK_NAME = "lock"


class PrivateDir:
    """A 0700 temporary directory, locked by this process, removed by `remove` (or by the
    next `PrivateDir` once this process is gone). Usable as a context manager."""

    def __init__(self, prefix: str) -> None:
        if prefix not in PREFIXES:
            raise ValueError(f"prefix {prefix!r} is not one the sweep knows: {PREFIXES}")
        sweep_stale()
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._lock = _hold_lock(self.path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *_: object) -> None:
        self.remove()


def _hold_lock(folder: Path) -> int | None:
    """Lock the directory for as long as this process lives. The lock file is locked under
    a temporary name and then renamed into place, so a sweeper never finds it unlocked
    while its process is alive."""
    if sys.platform == "win32":
        return None
    staging = folder / (LOCK_NAME + ".new")
    fd = os.open(staging, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, str(os.getpid()).encode())
    os.replace(staging, folder / LOCK_NAME)
    return fd


def sweep_stale(root: str | Path | None = None) -> list[Path]:
    """Remove what processes that are gone left behind: this user's doxa temporary
    directories whose lock nobody holds. A directory without a lock file (being created,
    or made by an older doxa) is left alone. Returns what was removed."""
    if sys.platform == "win32":
        return []
    removed: list[Path] = []
    base = Path(root or tempfile.gettempdir())
    for folder in (f for prefix in PREFIXES for f in base.glob(prefix + "*")):
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
        log.info("removed %s, left by a process that is gone", folder)
        removed.append(folder)
    return removed


def exit_on_sigterm() -> Callable[[], None]:
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


def create_private(path: str) -> None:
    """Create the file readable by its owner only (it holds personal data) before anything
    writes to it: the SQLite store's database (SQLite gives the -wal and -shm files the
    database file's mode) and the spool's files."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
