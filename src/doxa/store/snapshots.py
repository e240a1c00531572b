"""The SQL stores' read cache: the last committed model per user, checked against one row.

Parsing a 600-record model from its rows costs tens of milliseconds; reading the one row
that names the user's current commit costs a single indexed lookup. So a SQL store keeps
the model it last loaded or committed per user (a bounded LRU), tagged with the version
and commit id it was read at, and serves it again only when the user's row still carries
both. Every commit, from any process, writes a fresh commit id, and a delete removes the
row, so a snapshot is never older than the last commit made before the read began: the
check is a read of the store itself, not a message that may arrive late.

When the row has moved (another process committed), the held snapshot still saves most of
the parse: a commit rewrites only the records whose content hash changed, so the store
lists the user's (record id, content hash) pairs, keeps every held record whose hash is
the one stored, and reads and parses only the others; the events those records cite are
read as text and parsed only when the text's digest differs from the one held. Nothing is
taken on trust: each reused object is vouched for by a hash of the very row the database
holds now, read in the same transaction as the version it is served under.

The cache lives in the store object (an edge), never in module state, and a model is
frozen, so handing the same object to several readers shares nothing mutable.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, NamedTuple, Protocol, TypeVar

from doxa.events.parse import Event
from doxa.model.records import Record, UserModel
from doxa.store.base import carried_events

SNAPSHOT_USERS = 256
"""Users whose last model a store keeps parsed (a 600-record model is a few MB)."""


class Committed(Protocol):
    """What a snapshot holds at least: the model and the commit it was read at."""

    @property
    def version(self) -> int: ...

    @property
    def commit_id(self) -> str: ...

    @property
    def model(self) -> UserModel: ...


S = TypeVar("S", bound=Committed)


class Snapshots(Generic[S]):
    """Per-user snapshots, least recently used first out. Not locked: the SQLite store
    uses it under its connection lock, the PostgreSQL store on its event loop only."""

    def __init__(self, capacity: int = SNAPSHOT_USERS) -> None:
        self.capacity = capacity
        self._held: OrderedDict[str, S] = OrderedDict()

    def current(self, user_id: str, version: int, commit_id: str) -> S | None:
        """The user's snapshot if it was read at exactly this commit; a row without a
        commit id (a user never committed, or written by a doxa without snapshots) has
        none."""
        held = self._held.get(user_id)
        if held is None or not commit_id or (held.version, held.commit_id) != (version, commit_id):
            return None
        self._held.move_to_end(user_id)
        return held

    def remember(self, snapshot: S) -> None:
        user = snapshot.model.user_id
        self._held[user] = snapshot
        self._held.move_to_end(user)
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)

    def held(self, user_id: str) -> S | None:
        """The user's snapshot whatever commit it was read at: a source of records and
        events to reuse after checking each against the database, never a model to serve."""
        return self._held.get(user_id)

    def forget(self, user_id: str) -> None:
        self._held.pop(user_id, None)


RecordHashes = dict[str, tuple[Record, str]]
"""Record id -> (the record object held, the content hash of the row it was read from or
written as)."""
EventDigests = dict[str, bytes]
"""Event id -> `event_digest` of the row text the held event was read from or written as."""


def event_digest(data: str) -> bytes:
    """What a snapshot remembers of an event row's text: enough to know it unchanged."""
    return hashlib.blake2b(data.encode(), digest_size=16).digest()


def stale_ids(listed: Sequence[tuple[str, str]], held: Mapping[str, tuple[Record, str]]
              ) -> list[str]:
    """Of the stored (record id, content hash) pairs, the ids whose row must be parsed: not
    held, or held with another hash."""
    return [rid for rid, digest in listed
            if (kept := held.get(rid)) is None or kept[1] != digest]


def assemble(listed: Sequence[tuple[str, str]], held: Mapping[str, tuple[Record, str]],
             parsed: Mapping[str, Record]) -> tuple[tuple[Record, ...], RecordHashes]:
    """The records in stored order, each parsed now or held under the same hash, and the
    hashes the new snapshot keeps."""
    hashes: RecordHashes = {}
    for rid, digest in listed:
        record = parsed.get(rid)
        hashes[rid] = (record if record is not None else held[rid][0], digest)
    return tuple(record for record, _ in hashes.values()), hashes


class ReadEvents(NamedTuple):
    events: dict[str, Event]
    digests: EventDigests


def read_events(rows: Iterable[tuple[str, str]], held: Mapping[str, Event],
                digests: Mapping[str, bytes]) -> ReadEvents:
    """Events from their (id, text) rows, parsing only those whose text is not the one the
    held event was read from."""
    events: dict[str, Event] = {}
    seen: EventDigests = {}
    for eid, data in rows:
        digest = event_digest(data)
        kept = held.get(eid)
        events[eid] = (kept if kept is not None and digests.get(eid) == digest
                       else Event.model_validate_json(data))
        seen[eid] = digest
    return ReadEvents(events, seen)


def as_committed(model: UserModel, previous: UserModel, events: Iterable[Event],
                 version: int) -> UserModel:
    """What a fresh load returns after `model`, merged from the snapshot `previous`, is
    committed as `version` with the new `events`: the same records, the events they cite."""
    pool = {**previous.events, **model.events, **{e.id: e for e in events}}
    return model.model_copy(update={"version": version,
                                    "events": carried_events(model, previous, pool)})
