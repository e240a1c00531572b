"""The SQL stores' read cache: the last committed model per user, checked against one row.

Parsing a 600-record model from its rows costs tens of milliseconds; reading the one row
that names the user's current commit costs a single indexed lookup. So a SQL store keeps
the model it last loaded or committed per user (a bounded LRU), tagged with the version
and commit id it was read at, and serves it again only when the user's row still carries
both. Every commit, from any process, writes a fresh commit id, and a delete removes the
row, so a snapshot is never older than the last commit made before the read began: the
check is a read of the store itself, not a message that may arrive late.

The cache lives in the store object (an edge), never in module state, and a model is
frozen, so handing the same object to several readers shares nothing mutable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from doxa.events.parse import Event
from doxa.model.records import UserModel
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

    def forget(self, user_id: str) -> None:
        self._held.pop(user_id, None)


def as_committed(model: UserModel, previous: UserModel, events: Iterable[Event],
                 version: int) -> UserModel:
    """What a fresh load returns after `model`, merged from the snapshot `previous`, is
    committed as `version` with the new `events`: the same records, the events they cite."""
    pool = {**previous.events, **model.events, **{e.id: e for e in events}}
    return model.model_copy(update={"version": version,
                                    "events": carried_events(model, previous, pool)})
