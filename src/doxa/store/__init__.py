"""Stores: where user models, the event ledger and cached LLM answers live."""

from __future__ import annotations

from doxa.errors import ConfigError
from doxa.store.base import Store
from doxa.store.memory import MemoryStore
from doxa.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """A store from a URL: `memory://`, `sqlite:///path.db` (or a bare `*.db` path),
    `postgresql://...` (needs the `doxa[postgres]` extra)."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite://") or (("://" not in url) and url.endswith((".db", ".sqlite"))):
        return SqliteStore(url.removeprefix("sqlite:///").removeprefix("sqlite://") or ":memory:")
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
