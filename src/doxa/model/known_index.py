"""A word index over a user's records, kept from one model version to the next.

Choosing which known records the prompt shows ranks every active record by the words it
shares with the batch. Done record by record, that is a Python loop over the whole model on
every batch, which is most of doxa's own time once a user holds a thousand records. A merge
changes a handful of records and keeps the rest as the very same objects, so the index of a
user's previous model is brought up to date by difference (the records that are no longer
there out, the new ones in) and the ranking touches only the posting lists of the batch's
words, with C-level counting and key lookups.
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence

from doxa.model.diff import record_difference
from doxa.model.records import Record, UserModel

RankKey = tuple[float, str]
"""(-confidence, id): the order among records that share as many words with the batch."""

MAX_USERS = 128
"""Indexes kept (one per user, the latest model each); past it the least recent goes."""


def is_active(record: Record) -> bool:
    return record.status == "active"


class KnownIndex:
    """The records `keep` admits, by word, for one model version, with each one's rank key."""

    def __init__(self, words_of: Callable[[Record], frozenset[str]],
                 keep: Callable[[Record], bool] = is_active) -> None:
        self._words_of = words_of
        self._keep = keep
        self.records: tuple[Record, ...] = ()
        self.by_word: dict[str, set[str]] = {}
        self.kept: dict[str, Record] = {}
        self.key_of: dict[str, RankKey] = {}

    def update(self, records: tuple[Record, ...]) -> None:
        """Bring the index to `records`, touching only the objects that changed.

        Records are compared by identity: merge replaces a record it changes with a new
        object and keeps every other one, and the previous tuple (held here) keeps the old
        objects alive, so an id() seen before cannot belong to a different record now.
        """
        gone, came = record_difference(self.records, records)
        for record in gone:
            self._remove(record)
        for record in came:
            self._add(record)
        self.records = records

    def _add(self, record: Record) -> None:
        if not self._keep(record):
            return
        self.kept[record.id] = record
        self.key_of[record.id] = (-record.confidence, record.id)
        for word in self._words_of(record):
            self.by_word.setdefault(word, set()).add(record.id)

    def _remove(self, record: Record) -> None:
        if self.kept.get(record.id) is not record:
            return  # not kept, or not the version of this id that the index holds
        del self.kept[record.id], self.key_of[record.id]
        for word in self._words_of(record):  # the same words it was added under
            holders = self.by_word[word]
            holders.discard(record.id)
            if not holders:
                del self.by_word[word]

    def ranked(self, words: Iterable[str], count: int) -> list[str]:
        """The ids of the `count` best kept records: most shared words, then confidence,
        then id; the same order as ranking every record one by one."""
        shared: Counter[str] = Counter()
        for word in words:
            holders = self.by_word.get(word)
            if holders and len(holders) < len(self.key_of):  # one held by all changes no order
                shared.update(holders)
        # Only the overlap groups that can reach the top `count` are grouped at all.
        floor = heapq.nlargest(count, shared.values())[-1] if len(shared) > count else 1
        by_overlap: dict[int, list[str]] = {}
        for rid, n in shared.items():
            if n >= floor:
                by_overlap.setdefault(n, []).append(rid)
        best: list[str] = []
        for n in sorted(by_overlap, reverse=True):
            best += heapq.nsmallest(count - len(best), by_overlap[n], key=self.key_of.__getitem__)
            if len(best) >= count:
                return best
        rest = self.key_of.keys() - shared.keys()
        return best + heapq.nsmallest(count - len(best), rest, key=self.key_of.__getitem__)


class KnownIndexes:
    """The latest index per user, bounded; safe to share between threads."""

    def __init__(self, words_of: Callable[[Record], frozenset[str]],
                 keep: Callable[[Record], bool] = is_active,
                 max_users: int = MAX_USERS) -> None:
        self._words_of = words_of
        self._keep = keep
        self._max_users = max_users
        self._by_user: OrderedDict[str, KnownIndex] = OrderedDict()
        self._lock = threading.Lock()

    def ranked(self, model: UserModel, words: Iterable[str], count: int) -> Sequence[Record]:
        """The `count` best kept records of `model` for these words (see `KnownIndex.ranked`)."""
        with self._lock:
            index = self._current(model)
            return [index.kept[rid] for rid in index.ranked(words, count)]

    def sharing(self, model: UserModel, words: Iterable[str]) -> set[str]:
        """The ids of `model`'s kept records that hold at least one of these words."""
        with self._lock:
            index = self._current(model)
            found: set[str] = set()
            for word in words:
                found |= index.by_word.get(word, set())
            return found

    def _current(self, model: UserModel) -> KnownIndex:
        index = self._by_user.pop(model.user_id, None) or KnownIndex(self._words_of, self._keep)
        if index.records is not model.records:
            index.update(model.records)
        self._by_user[model.user_id] = index
        while len(self._by_user) > self._max_users:
            self._by_user.popitem(last=False)
        return index
