"""A word index over a user's records, kept from one model version to the next.

Choosing which known records the prompt shows ranks every active record by the words it
shares with the batch, and merge's duplicate search reads the records that share a word
with a proposal. Done record by record, that is a Python loop over the whole model on every
batch, which is most of doxa's own time once a user holds a thousand records. A merge
changes a handful of records and keeps the rest as the very same objects, so an index
built for a previous version is brought up to date by difference (the records that are no
longer there out, the new ones in) and the ranking touches only the posting lists of the
batch's words, with C-level counting and key lookups. The index is a view of a model,
held with it (`doxa.model.views`); nothing here is shared between models.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

RankKey = tuple[float, str]
"""(-confidence, id): the order among records that share as many words with the batch."""


class Indexed(Protocol):
    """What the index reads of a record besides its words."""

    @property
    def id(self) -> str: ...

    @property
    def confidence(self) -> float: ...


R = TypeVar("R", bound=Indexed)
WordsOf = Callable[[R], frozenset[str]]
Keep = Callable[[R], bool]


class KnownIndex(Generic[R]):
    """The records `keep` admits, by word, for one model version, with each one's rank key."""

    def __init__(self, words_of: WordsOf[R], keep: Keep[R]) -> None:
        self._words_of = words_of
        self._keep = keep
        self.records: Sequence[R] = ()
        self.by_word: dict[str, set[str]] = {}
        self.kept: dict[str, R] = {}
        self.key_of: dict[str, RankKey] = {}

    def update(self, records: Sequence[R], gone: Iterable[R], came: Iterable[R]) -> None:
        """Bring the index to `records`, given the objects that left and came since the
        version it holds (`doxa.model.diff.record_difference`).

        Records are compared by identity: merge replaces a record it changes with a new
        object and keeps every other one, and the previous sequence (held here) keeps the
        old objects alive, so an id() seen before cannot belong to a different record now.
        """
        for record in gone:
            self._remove(record)
        for record in came:
            self._add(record)
        self.records = records

    def _add(self, record: R) -> None:
        if not self._keep(record):
            return
        self.kept[record.id] = record
        self.key_of[record.id] = (-record.confidence, record.id)
        for word in self._words_of(record):
            self.by_word.setdefault(word, set()).add(record.id)

    def _remove(self, record: R) -> None:
        if self.kept.get(record.id) is not record:
            return  # not kept, or not the version of this id that the index holds
        del self.kept[record.id], self.key_of[record.id]
        for word in self._words_of(record):  # the same words it was added under
            holders = self.by_word[word]
            holders.discard(record.id)
            if not holders:
                del self.by_word[word]

    def ranked(self, words: Iterable[str], count: int) -> list[R]:
        """The `count` best kept records: most shared words, then confidence, then id; the
        same order as ranking every record one by one."""
        return [self.kept[rid] for rid in self._ranked_ids(words, count)]

    def sharing(self, words: Iterable[str]) -> set[str]:
        """The ids of the kept records that hold at least one of these words."""
        found: set[str] = set()
        for word in words:
            found |= self.by_word.get(word, set())
        return found

    def _ranked_ids(self, words: Iterable[str], count: int) -> list[str]:
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
