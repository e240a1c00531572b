"""Which record objects differ between two versions of a user's model.

Merge replaces a record it changes with a new object and keeps every other record as the
very same object, so two versions differ exactly in the objects one holds and the other
does not. Several consumers need that difference for the same pair of versions (the word
indexes behind the prompt slice and the duplicate search, and the store's commit); it is
worked out once, with the passes over every record kept in C, and remembered for a few pairs.
"""

from __future__ import annotations

import threading
from itertools import compress

from doxa.model.records import Record

Records = tuple[Record, ...]

_REMEMBERED = 4
_recent: list[tuple[Records, Records, list[Record], list[Record]]] = []
_lock = threading.Lock()


def record_difference(old: Records, new: Records) -> tuple[list[Record], list[Record]]:
    """(records of `old` that `new` no longer holds, records of `new` that `old` did not).

    Identity is safe: both tuples are alive while this runs (and while remembered here), so
    an id() cannot belong to two different objects.
    """
    with _lock:
        for was, now, gone, came in _recent:
            if was is old and now is new:
                return gone, came
    before, after = set(map(id, old)), set(map(id, new))
    gone_ids, came_ids = before - after, after - before
    gone = list(compress(old, map(gone_ids.__contains__, map(id, old)))) if gone_ids else []
    came = list(compress(new, map(came_ids.__contains__, map(id, new)))) if came_ids else []
    with _lock:
        _recent.insert(0, (old, new, gone, came))
        del _recent[_REMEMBERED:]
    return gone, came
