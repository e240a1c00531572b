"""In-memory store: the reference semantics of the Store protocol, for tests and demos."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from doxa.calibration.outcomes import OutcomeCount
from doxa.core.flush import BufferSummary
from doxa.errors import BufferClaimLostError, StoreConflictError, UserErasedError
from doxa.events.parse import Event
from doxa.model.records import Change, UserModel
from doxa.store.base import BufferClaim, carried_events, erasure_key


@dataclass(frozen=True)
class _Buffered:
    """One buffered event and who holds it."""

    event: Event
    tokens: int
    added_at: datetime
    claim: str | None = None
    claimed_until: datetime | None = None

    def free(self, now: datetime) -> bool:
        return self.claim is None or (self.claimed_until is not None
                                      and self.claimed_until < now)


class MemoryStore:
    """Dicts behind a lock; models are frozen, so handing them out shares nothing mutable."""

    def __init__(self) -> None:
        self._models: dict[str, UserModel] = {}
        self._events: dict[str, dict[str, Event]] = {}
        self._ledger: dict[str, set[str]] = {}
        self._cache: dict[str, tuple[str, str]] = {}
        self._generations: dict[str, int] = {}
        self._buffer: dict[str, dict[str, _Buffered]] = {}
        self._outcomes: dict[str, dict[tuple[str, str, str, str, int], OutcomeCount]] = {}
        self._lock = asyncio.Lock()

    async def load(self, user_id: str) -> UserModel:
        # Committed models are stored with their cited events already attached (see commit).
        return self._models.get(user_id) or UserModel(user_id=user_id)

    async def processed(self, user_id: str, event_ids: Iterable[str]) -> set[str]:
        seen = self._ledger.get(user_id, set())
        return {e for e in event_ids if e in seen}

    async def generation(self, user_id: str) -> int:
        return self._generations.get(erasure_key(user_id), 0)

    async def commit(self, model: UserModel, *, expected_version: int,
                     changes: Sequence[Change], events: Sequence[Event],
                     processed_ids: Sequence[str], generation: int = 0,
                     claim: BufferClaim | None = None,
                     outcomes: Sequence[OutcomeCount] = ()) -> int:
        async with self._lock:
            user = model.user_id
            erased = await self.generation(user)
            if erased != generation:
                raise UserErasedError(user, generation, erased)
            current = self._models.get(user)
            found = current.version if current else 0
            if found != expected_version:
                raise StoreConflictError(user, expected_version, found)
            buffered = self._buffer.get(user, {})
            if claim is not None:
                if len(self._held(claim)) != len(claim.events):
                    raise BufferClaimLostError(user)
                buffered = {k: v for k, v in buffered.items() if v.claim != claim.token}
            # Build everything first, then swap it in: a failure leaves nothing half-written.
            new_events = {**self._events.get(user, {}), **{e.id: e for e in events}}
            new = model.model_copy(update={
                "version": found + 1,
                "events": carried_events(model, current, new_events)})
            new_ledger = self._ledger.get(user, set()) | set(processed_ids)
            counts = _added(self._outcomes.get(user, {}), outcomes)
            self._models[user], self._events[user], self._ledger[user] = (
                new, new_events, new_ledger)
            self._set_buffer(user, buffered)
            self._outcomes[user] = counts
            return new.version

    def _held(self, claim: BufferClaim) -> list[str]:
        return [k for k, v in self._buffer.get(claim.user_id, {}).items()
                if v.claim == claim.token]

    def _set_buffer(self, user: str, rows: dict[str, _Buffered]) -> None:
        if rows:
            self._buffer[user] = rows
        else:
            self._buffer.pop(user, None)

    async def buffer_add(self, entries: Sequence[tuple[Event, int]], *, now: datetime) -> int:
        async with self._lock:
            added = 0
            for event, tokens in entries:
                rows = self._buffer.setdefault(event.user_id, {})
                if event.id in rows or event.id in self._ledger.get(event.user_id, set()):
                    continue
                rows[event.id] = _Buffered(event, tokens, now)
                added += 1
            return added

    async def buffer_summaries(self, *, now: datetime,
                               high_signal_types: Set[str]) -> list[BufferSummary]:
        return [BufferSummary.of_rows(user, [(r.event.type, r.tokens, r.added_at,
                                              not r.free(now)) for r in rows.values()],
                                      high_signal_types)
                for user, rows in sorted(self._buffer.items()) if rows]

    async def buffer_claim(self, user_id: str, token: str, *, now: datetime,
                           until: datetime) -> BufferClaim:
        async with self._lock:
            rows = self._buffer.get(user_id, {})
            taken = {k: replace(v, claim=token, claimed_until=until)
                     for k, v in rows.items() if v.free(now)}
            rows.update(taken)
            return BufferClaim(user_id, token, tuple(v.event for v in taken.values()))

    async def buffer_renew(self, token: str, *, until: datetime) -> int:
        async with self._lock:
            held = 0
            for rows in self._buffer.values():
                for k, v in rows.items():
                    if v.claim == token:
                        rows[k] = replace(v, claimed_until=until)
                        held += 1
            return held

    async def buffer_consume(self, claim: BufferClaim) -> int:
        async with self._lock:
            held = set(self._held(claim))
            self._set_buffer(claim.user_id, {k: v for k, v in self._buffer.get(
                claim.user_id, {}).items() if k not in held})
            return len(held)

    async def events(self, user_id: str, event_ids: Iterable[str]) -> dict[str, Event]:
        stored = self._events.get(user_id, {})
        return {e: stored[e] for e in event_ids if e in stored}

    async def users(self) -> list[str]:
        return sorted(set(self._models) | set(self._ledger))

    async def outcome_counts(self, user_id: str | None = None) -> list[OutcomeCount]:
        users = sorted(self._outcomes) if user_id is None else [user_id]
        return [c for u in users for _, c in sorted(self._outcomes.get(u, {}).items())]

    async def delete_user(self, user_id: str) -> None:
        async with self._lock:
            key = erasure_key(user_id)
            self._generations[key] = self._generations.get(key, 0) + 1
            self._models.pop(user_id, None)
            self._events.pop(user_id, None)
            self._ledger.pop(user_id, None)
            self._buffer.pop(user_id, None)
            self._outcomes.pop(user_id, None)
            for key in [k for k, (owner, _) in self._cache.items() if owner == user_id]:
                del self._cache[key]

    async def export_user(self, user_id: str) -> dict[str, Any]:
        model = await self.load(user_id)
        return {
            "user_id": user_id, "version": model.version,
            "records": [r.model_dump(mode="json") for r in model.records],
            "events": [e.model_dump(mode="json") for e in self._events.get(user_id, {}).values()],
            "ledger": sorted(self._ledger.get(user_id, set())),
            "outcome_counts": [c.model_dump(mode="json")
                               for c in await self.outcome_counts(user_id)],
        }

    async def cache_get(self, key: str) -> str | None:
        hit = self._cache.get(key)
        return hit[1] if hit else None

    async def cache_put(self, key: str, user_id: str, value: str, *,
                        generation: int = 0) -> None:
        if await self.generation(user_id) == generation:
            self._cache[key] = (user_id, value)

    async def close(self) -> None:
        return None


def _added(held: dict[tuple[str, str, str, str, int], OutcomeCount],
           outcomes: Sequence[OutcomeCount]) -> dict[tuple[str, str, str, str, int], OutcomeCount]:
    """A copy of `held` with `outcomes` added in (the stored value is never changed)."""
    counts = dict(held)
    for c in outcomes:
        key = (c.profile, c.model, c.prompt_version, c.kind, c.bin)
        if (old := counts.get(key)) is not None:
            c = old.model_copy(update={"n": old.n + c.n, "right": old.right + c.right,
                                       "confidence_sum": old.confidence_sum + c.confidence_sum})
        counts[key] = c
    return counts
