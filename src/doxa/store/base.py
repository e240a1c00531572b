"""The `Store` protocol: durability for user models and the event ledger; `ResponseCache`.

An ingest commits in ONE transaction: the user's records (with evidence and history), the
events the batch referenced, and the ids of every event processed. A crash before commit
leaves the store as it was; a re-run then does the same work again.

Erasure is final. Each user has an erasure generation (0 until the first delete), moved on
by every `delete_user` in the same transaction that removes the user's rows. Work reads the
generation before it reads anything else and hands it to `commit` (and `cache_put`), which
refuse it (`UserErasedError`; the cache silently) when a delete came in between: work that
began before a delete can never bring the user back, and work that begins after it starts a
fresh model. The generation is kept per user under `erasure_key` (a SHA-256 of the id, never
the id itself) for as long as the store lives, because in-flight work may be arbitrarily old.

Events that arrive one at a time wait in a per-user buffer (`EventBuffer`) until a flush
extracts them. A flush claims a user's buffered rows for a lease, and the commit that merges
their extraction deletes exactly those rows in its own transaction (`commit(claim=...)`): a
crash before it leaves the rows buffered for the next worker once the lease runs out, and
a commit whose claim was taken over is refused whole, so no event is merged twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from doxa.calibration.outcomes import OutcomeCount
from doxa.core.flush import BufferSummary
from doxa.events.parse import Event
from doxa.model.records import Change, UserModel, cited_event_ids


@runtime_checkable
class ResponseCache(Protocol):
    """LLM answers kept by request key, so the same request is not paid for twice (the
    engine's `cache=True`, the eval harness).

    A protocol of its own because it is a different concern from the models: the extractor
    only reads and writes answers, and an engine may keep them in another store than its
    models (`cache_store=`). Every store implements it in the same database as the models
    because a cached answer is personal data too: `delete_user` removes it in the same
    transaction, and the erasure generation refuses an answer to work begun before a delete.
    """

    async def cache_get(self, key: str) -> str | None:
        """A cached LLM response body by key."""

    async def cache_put(self, key: str, user_id: str, value: str, *,
                        generation: int = 0) -> None:
        """Store an LLM response body under key, owned by user_id (deleted with the user);
        nothing is stored when the user's erasure generation is no longer `generation`."""


@dataclass(frozen=True)
class BufferClaim:
    """One flush's hold on a user's buffered events: the rows it claimed under `token`."""

    user_id: str
    token: str
    events: tuple[Event, ...]


@runtime_checkable
class EventBuffer(Protocol):
    """Events waiting, per user, until a flush makes one extraction of them.

    Durable in the same database as the models, because a buffered event is personal data
    (deleted with the user) and because its removal must commit with its extraction.
    Times are given by the caller (the engine's clock), never read by the store.
    """

    async def buffer_add(self, entries: Sequence[tuple[Event, int]], *, now: datetime) -> int:
        """Buffer each (event, relevant text tokens), arrived at `now`; an event already
        buffered or already processed for its user is left out. Returns how many were added."""

    async def buffer_summaries(self, *, now: datetime,
                               high_signal_types: Set[str]) -> list[BufferSummary]:
        """Every user with buffered events, sorted by user id; a claim whose lease ended
        before `now` counts as free."""

    async def buffer_claim(self, user_id: str, token: str, *, now: datetime,
                           until: datetime) -> BufferClaim:
        """Claim the user's free buffered rows (unclaimed, or with a lease ended before
        `now`) for `token` until `until`; the claim holds no events when none were free."""

    async def buffer_renew(self, token: str, *, until: datetime) -> int:
        """Extend every lease held under `token`; returns how many rows it still holds."""

    async def buffer_consume(self, claim: BufferClaim) -> int:
        """Delete the claimed rows that `claim` still holds (its events were all processed
        already, so there is nothing to commit); returns how many."""


@runtime_checkable
class Store(ResponseCache, EventBuffer, Protocol):
    """Where user models live, with their response cache. Implementations: memory, sqlite,
    postgres."""

    async def load(self, user_id: str) -> UserModel:
        """The user's model with its version (0 and no records for an unknown user).

        `UserModel.events` holds the stored events that the records' evidence points at.
        """

    async def processed(self, user_id: str, event_ids: Iterable[str]) -> set[str]:
        """Which of these event ids were already processed for this user."""

    async def generation(self, user_id: str) -> int:
        """The user's erasure generation: how many times the user was deleted."""

    async def commit(
        self,
        model: UserModel,
        *,
        expected_version: int,
        changes: Sequence[Change],
        events: Sequence[Event],
        processed_ids: Sequence[str],
        generation: int = 0,
        claim: BufferClaim | None = None,
        outcomes: Sequence[OutcomeCount] = (),
    ) -> int:
        """Write the whole model, events and ledger atomically; return the new version.

        `outcomes` are added to the user's outcome counts in the same transaction, so a
        delivery outcome is counted exactly when its event is processed.

        Raises `UserErasedError` when the user's erasure generation is not `generation` (a
        delete came after the work began), else `StoreConflictError` when the stored version
        is not `expected_version`. With a `claim`, its buffered rows are deleted in the same
        transaction, and `BufferClaimLostError` refuses the commit when it no longer holds
        every one of them.
        """

    async def events(self, user_id: str, event_ids: Iterable[str]) -> dict[str, Event]:
        """Stored events by id (missing ids are left out)."""

    async def users(self) -> list[str]:
        """Every user id with a model or processed events, sorted."""

    async def outcome_counts(self, user_id: str | None = None) -> list[OutcomeCount]:
        """The user's outcome counts (every user's with None), in key order."""

    async def delete_user(self, user_id: str) -> None:
        """Erase everything held about the user: records, evidence, history, events, ledger,
        cached responses, buffered events; and move the user's erasure generation on."""

    async def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything held about the user as JSON-ready data."""

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""


def erasure_key(user_id: str) -> str:
    """What a store keeps of a deleted user: a digest of the id, to refuse stale work by."""
    return hashlib.sha256(user_id.encode()).hexdigest()


def carried_events(model: UserModel, committed: UserModel | None,
                   pool: Mapping[str, Event]) -> dict[str, Event]:
    """The events `model` carries once committed: those its records cite, taken from `pool`
    (every event stored for the user that may be cited).

    Merge replaces the records it changes and keeps the others as the same objects. When
    every record object of `committed` (the version `model` was merged from) is either still
    there or replaced by a record of the same id citing at least its events, the events it
    carried are still cited: only the replaced and new records are read, not every record's
    evidence on every commit.
    """
    if committed is not None:
        gone, replaced = model.views.difference(committed.records, model.records)
        by_id = {r.id: r for r in replaced}
        if all(r.id in by_id and r.cited_ids() <= by_id[r.id].cited_ids() for r in gone):
            cited = cited_event_ids(replaced)
            return {**committed.events, **{k: pool[k] for k in cited if k in pool}}
    cited = cited_event_ids(model.records)
    return {k: pool[k] for k in cited if k in pool}
