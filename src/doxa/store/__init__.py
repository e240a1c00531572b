"""Stores: where user models, the event ledger and cached LLM answers live.

The end of the flow: the engine commits a merged model, the events it cites and the ids
it processed in one transaction (`base.Store`), and a cached LLM answer is kept beside
them (`base.ResponseCache`) so that deleting a user erases it too. SQLite is the default,
PostgreSQL the shared option (one table definition for both in `tables`), memory the one
for tests and the demo; `open_store(url)` picks one from a URL.
"""

from __future__ import annotations

from doxa.errors import ConfigError
from doxa.store.base import ResponseCache, Store
from doxa.store.memory import MemoryStore
from doxa.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "ResponseCache", "SqliteStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """A store from a URL: `memory://`, `sqlite:///path.db` (or a bare `*.db` path),
    `postgresql://...` (needs the `doxa[postgres]` extra).

    SQLite takes `?synchronous=full` to fsync every commit; the default, `normal`, survives
    any crash of the process and keeps the file consistent on power loss, where the last
    commits may be lost (they are re-derived by ingesting the same events again)."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite://") or (("://" not in url) and url.endswith((".db", ".sqlite"))):
        path, _, query = url.removeprefix("sqlite:///").removeprefix("sqlite://").partition("?")
        options = dict(part.partition("=")[::2] for part in query.split("&") if part)
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ConfigError(f"unknown SQLite option(s) {sorted(unknown)} in '{url}'; "
                              "the one option is ?synchronous=normal|full")
        synchronous = options.get("synchronous", "normal").lower()
        if synchronous not in ("normal", "full"):
            raise ConfigError(f"synchronous={synchronous} in '{url}': use normal or full")
        return SqliteStore(path or ":memory:", synchronous=synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from doxa.store.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"{url.split('://')[0]} stores need psycopg: pip install 'doxa[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise ConfigError(
        f"unknown store '{url}'; use memory://, sqlite:///path.db (or path.db) or postgresql://..."
    )
