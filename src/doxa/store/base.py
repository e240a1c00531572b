"""The `Store` protocol: durability for user models, the event ledger and the response cache.

An ingest commits in ONE transaction: the user's records (with evidence and history), the
events the batch referenced, and the ids of every event processed. A crash before commit
leaves the store as it was; a re-run then does the same work again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress
from typing import Any, Protocol, runtime_checkable

from doxa.events import Event
from doxa.records import Change, UserModel


@runtime_checkable
class Store(Protocol):
    """Where user models live. Implementations: memory, sqlite, postgres."""

    async def load(self, user_id: str) -> UserModel:
        """The user's model with its version (0 and no records for an unknown user).

        `UserModel.events` holds the stored events that the records' evidence points at.
        """

    async def processed(self, user_id: str, event_ids: Iterable[str]) -> set[str]:
        """Which of these event ids were already processed for this user."""

    async def commit(
        self,
        model: UserModel,
        *,
        expected_version: int,
        changes: Sequence[Change],
        events: Sequence[Event],
        processed_ids: Sequence[str],
    ) -> int:
        """Write the whole model, events and ledger atomically; return the new version.

        Raises `StoreConflictError` when the stored version is not `expected_version`.
        """

    async def events(self, user_id: str, event_ids: Iterable[str]) -> dict[str, Event]:
        """Stored events by id (missing ids are left out)."""

    async def users(self) -> list[str]:
        """Every user id with a model or processed events, sorted."""

    async def delete_user(self, user_id: str) -> None:
        """Erase everything held about the user: records, evidence, history, events, ledger,
        cached responses."""

    async def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything held about the user as JSON-ready data."""

    async def cache_get(self, key: str) -> str | None:
        """A cached LLM response body by key."""

    async def cache_put(self, key: str, user_id: str, value: str) -> None:
        """Store an LLM response body under key, owned by user_id (deleted with the user)."""

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""


def cited_events(model: UserModel, committed: UserModel | None) -> set[str]:
    """The event ids `model`'s records cite, for the events a committed model carries.

    Merge replaces the records it changes and keeps the others as the same objects, so when
    no record object of the committed model it was merged from is gone, what those cite is
    already in its events: only the replaced and new records are read, not every record's
    evidence on every commit.
    """
    if committed is not None:
        before = set(map(id, committed.records))
        after = set(map(id, model.records))
        if before <= after:
            fresh = after - before
            # compress/map keep the pass over every record in C; only new objects are read.
            changed = compress(model.records, map(fresh.__contains__, map(id, model.records)))
            return set(committed.events) | {e.event_id for r in changed for e in r.evidence}
    return {e.event_id for r in model.records for e in r.evidence}
