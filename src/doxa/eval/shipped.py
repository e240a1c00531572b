"""Shipped eval caches: LLM answers committed as `evals/cache/*.jsonl`, so a fresh clone
re-scores the committed baselines offline, with no model and no key.

`doxa eval run` looks answers up in its local cache (`<cache dir>/eval.db`, a SQLite store).
A shipped file is a reviewable copy of one: one JSON object per line, `{"key", "user_id",
"value"}`, sorted by key so that a re-export diffs line by line. Before a run starts, the
local cache is seeded with the shipped entries it lacks; a local entry is never overwritten
(an answer the user got from their own model wins). Every lookup after that is the ordinary
local one, so a shipped answer is a cache hit like any other, and the extractor reviews it
again as it does every cached answer.

Every shipped file is read and checked before the local cache is touched: a malformed line
is an `InvalidCacheFileError` naming the file and the line, and nothing is seeded.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from doxa.errors import ConfigError, InvalidCacheFileError
from doxa.store.base import ResponseCache
from doxa.store.sqlite import SqliteStore

DEFAULT_DIR = Path("evals") / "cache"
"""Where `doxa eval run` finds shipped answers by default, relative to the current folder."""
SUFFIX = ".jsonl"
LOCAL_CACHE = "eval.db"
"""The local cache file inside a `--cache-dir` (the runner and the naive baseline use it)."""


class CacheEntry(BaseModel):
    """One cached LLM answer as a shipped file holds it (a row of the store's cache)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    key: str = Field(min_length=1)
    """The request's hash (provider, base URL, settings, exact prompt)."""
    user_id: str
    """Whose events the request held: the answer is deleted with that user."""
    value: str
    """The answer as the cache stores it (JSON text written by its caller)."""


@dataclass(frozen=True)
class Seeded:
    """What seeding a local cache from a folder of shipped files did."""

    folder: Path
    files: int
    entries: int
    """Distinct keys in the shipped files."""
    added: int
    """Of those, how many the local cache lacked and now holds."""


def shipped_folder(folder: str | None, *, cache: bool) -> Path | None:
    """The folder of shipped files a run reads: none when caching is off or `folder` is "";
    `DEFAULT_DIR` when it exists and no folder is given; else the given one, which must
    exist (a mistyped folder would otherwise silently call the model)."""
    if not cache or folder == "":
        return None
    if folder is None:
        return DEFAULT_DIR if DEFAULT_DIR.is_dir() else None
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"shipped cache folder {folder} does not exist (give '' to read "
                          "no shipped answers)")
    return path


def read_cache_file(path: Path) -> list[CacheEntry]:
    """The entries of one shipped file, in file order; blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidCacheFileError(path, f"cannot read it: {exc}") from None
    entries: list[CacheEntry] = []
    seen: set[str] = set()
    # Split on "\n" alone: an answer may quote U+2028 or U+0085, which json.dumps leaves
    # as they are and `str.splitlines` would take for line ends.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        entry = _parse_line(path, number, line)
        if entry.key in seen:
            raise InvalidCacheFileError(path, f"key {entry.key} appears twice", line=number)
        seen.add(entry.key)
        entries.append(entry)
    return entries


def _parse_line(path: Path, number: int, line: str) -> CacheEntry:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidCacheFileError(path, f"not JSON ({exc.msg}, column {exc.colno})",
                                    line=number) from None
    if not isinstance(data, dict):
        raise InvalidCacheFileError(path, 'expected an object {"key", "user_id", "value"}',
                                    line=number)
    try:
        return CacheEntry.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "(line)"
        raise InvalidCacheFileError(path, f"field '{field}': {err['msg']}",
                                    line=number) from None


def read_cache_folder(folder: Path) -> tuple[list[Path], list[CacheEntry]]:
    """Every `*.jsonl` file of the folder, in name order, and their entries; a key found in
    several files keeps its first file's answer (the same request asked in two sittings)."""
    files = sorted(p for p in folder.glob(f"*{SUFFIX}") if p.is_file())
    entries: dict[str, CacheEntry] = {}
    for path in files:
        for entry in read_cache_file(path):
            entries.setdefault(entry.key, entry)
    return files, list(entries.values())


async def seed(cache: ResponseCache, entries: Iterable[CacheEntry]) -> int:
    """Put into `cache` each entry whose key it lacks; returns how many were added. An
    entry already there is left as it is: the local answer wins."""
    added = 0
    for entry in entries:
        if await cache.cache_get(entry.key) is None:
            await cache.cache_put(entry.key, entry.user_id, entry.value)
            added += 1
    return added


async def seed_cache_dir(folder: Path, cache_dir: str | Path) -> Seeded:
    """Seed `<cache_dir>/eval.db` from the shipped files in `folder`; every file is checked
    first, so a malformed one leaves the local cache untouched (not even created)."""
    files, entries = await asyncio.to_thread(read_cache_folder, folder)
    if not entries:
        return Seeded(folder, len(files), 0, 0)
    store = SqliteStore(Path(cache_dir) / LOCAL_CACHE)
    try:
        added = await seed(store, entries)
    finally:
        await store.close()
    return Seeded(folder, len(files), len(entries), added)


async def export_cache(cache_dir: str | Path, out: str | Path) -> int:
    """Write every entry of `<cache_dir>/eval.db` to `out`, sorted by key; returns how many.

    `out` is replaced whole or not at all (`write_cache_file`). It is created 0600 like the
    local cache, since its answers quote the users' events."""
    db = Path(cache_dir) / LOCAL_CACHE
    if not db.is_file():
        raise ConfigError(f"{db} does not exist: no cache to export (run `doxa eval run` "
                          f"with --cache-dir {cache_dir} first)")
    store = SqliteStore(db)
    try:
        entries = [CacheEntry(key=key, user_id=user_id, value=value)
                   async for key, user_id, value in store.cache_entries()]
    finally:
        await store.close()
    return await asyncio.to_thread(write_cache_file, Path(out), entries)


def write_cache_file(path: Path, entries: Iterable[CacheEntry]) -> int:
    """Write entries as a shipped file, sorted by key; returns how many.

    Write-then-rename: the lines go to a temporary file beside `path`, which replaces it
    only once all are on disk, so `path` is what it was or the whole new file, and an error
    leaves no staging file behind."""
    lines = [json.dumps(e.model_dump(), ensure_ascii=False) + "\n"
             for e in sorted(entries, key=lambda e: e.key)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return len(lines)
