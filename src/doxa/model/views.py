"""What is derived from a user model's records and kept with the model, not in module state.

A `UserModel` is frozen, and merge makes the next version with `model_copy`, which keeps
the records it did not change as the same objects and hands the same `ModelViews` on: the
versions of one user's model, as the engine loads, merges and commits them, share one
holder. So a word index built for one version is brought to the next by difference
(`doxa.model.known_index`), and the difference between two versions is worked out once
for its several readers (`doxa.model.diff`). Asking an older version again is as correct:
the index follows whichever version it is asked about.

The holder is a cache and nothing else: it takes no part in equality (two models with the
same records are equal whatever either has built), and a copied or unpickled model starts
with an empty one. A lock serialises its use across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any, Generic

from doxa.model.diff import RecentDifferences
from doxa.model.known_index import Keep, KnownIndex, R, WordsOf


class ModelViews(Generic[R]):
    """The word indexes and recent differences of one lineage of model versions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[tuple[WordsOf[R], Keep[R]], KnownIndex[R]] = {}
        self._differences: RecentDifferences[R] = RecentDifferences()

    def difference(self, old: Sequence[R], new: Sequence[R]) -> tuple[list[R], list[R]]:
        """(records of `old` that `new` no longer holds, records of `new` that `old` did not)."""
        with self._lock:
            return self._differences.between(old, new)

    def ranked(self, records: Sequence[R], words: Iterable[str], count: int, *,
               words_of: WordsOf[R], keep: Keep[R]) -> list[R]:
        """The `count` records of `records` that `keep` admits ranked best for these words:
        most shared words, then confidence, then id (see `KnownIndex.ranked`)."""
        with self._lock:
            return self._index(records, words_of, keep).ranked(words, count)

    def sharing(self, records: Sequence[R], words: Iterable[str], *,
                words_of: WordsOf[R], keep: Keep[R]) -> set[str]:
        """The ids of the records `keep` admits that hold at least one of these words."""
        with self._lock:
            return self._index(records, words_of, keep).sharing(words)

    def _index(self, records: Sequence[R], words_of: WordsOf[R], keep: Keep[R]
               ) -> KnownIndex[R]:
        index = self._indexes.get((words_of, keep))
        if index is None:
            index = self._indexes[words_of, keep] = KnownIndex(words_of, keep)
        if index.records is not records:
            gone, came = self._differences.between(index.records, records)
            index.update(records, gone, came)
        return index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelViews)  # derived data: never what tells models apart

    def __deepcopy__(self, memo: dict[int, Any]) -> ModelViews[R]:
        return ModelViews()

    def __reduce__(self) -> tuple[type[ModelViews[Any]], tuple[()]]:
        return ModelViews, ()
