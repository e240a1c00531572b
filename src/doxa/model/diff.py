"""Which record objects differ between two versions of a user's model.

Merge replaces a record it changes with a new object and keeps every other record as the
very same object, so two versions differ exactly in the objects one holds and the other
does not. Several consumers need that difference for the same pair of versions (the word
indexes behind the prompt slice and the duplicate search, and the store's commit); it is
worked out with the passes over every record kept in C, and `RecentDifferences` (held with
the model, see `doxa.model.views`) remembers it for a few pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress
from typing import Generic, TypeVar

T = TypeVar("T")

REMEMBERED = 4
"""Pairs of versions a `RecentDifferences` keeps."""


def record_difference(old: Sequence[T], new: Sequence[T]) -> tuple[list[T], list[T]]:
    """(objects of `old` that `new` no longer holds, objects of `new` that `old` did not).

    Identity is safe: both sequences are alive while this runs, so an id() cannot belong to
    two different objects.
    """
    before, after = set(map(id, old)), set(map(id, new))
    gone_ids, came_ids = before - after, after - before
    gone = list(compress(old, map(gone_ids.__contains__, map(id, old)))) if gone_ids else []
    came = list(compress(new, map(came_ids.__contains__, map(id, new)))) if came_ids else []
    return gone, came


class RecentDifferences(Generic[T]):
    """The differences between the last few pairs of versions asked for.

    Versions are matched by identity (`is`): a remembered pair holds both sequences, so
    neither can be freed and its id() reused while it is remembered. Not locked: its owner
    (`ModelViews`) serialises access.
    """

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self._remembered = remembered
        self._pairs: list[tuple[Sequence[T], Sequence[T], list[T], list[T]]] = []

    def between(self, old: Sequence[T], new: Sequence[T]) -> tuple[list[T], list[T]]:
        """`record_difference(old, new)`, worked out once per remembered pair."""
        for was, now, gone, came in self._pairs:
            if was is old and now is new:
                return gone, came
        gone, came = record_difference(old, new)
        self._pairs.insert(0, (old, new, gone, came))
        del self._pairs[self._remembered:]
        return gone, came
