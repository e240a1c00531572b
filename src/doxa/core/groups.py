"""Record groups across users: what counts as "the same" belief, goal or value for two
different users, so that users can be counted by what they hold.

Two ways, the `--by` of `doxa leverage`: a schema dimension's value (`purchase_stage=
business_case`; exact, for closed dimensions), or statements clustered by similarity (the
lexical matcher by default, the embedding matcher where paraphrases matter). Pure: the
same records and similarity give the same groups, labelled by their commonest statement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from doxa.core.similarity import Similarity, lexical_similarity
from doxa.model.records import Record

GroupBy = Literal["dimension", "statement-cluster"]
CLUSTER_THRESHOLD = 0.5
"""Similarity to a cluster's first statement that puts a statement in it (lexical: half
the content words shared, stricter than merge's duplicate rule is not needed across users)."""


@dataclass
class Group:
    """Records of many users that say the same thing, keyed and labelled."""

    key: str
    kind: str
    statements: Counter[str] = field(default_factory=Counter)

    @property
    def label(self) -> str:
        """The commonest statement (ties: the first in sort order), or the key."""
        if not self.statements:
            return self.key
        return min(self.statements.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def dimension_key(record: Record) -> str | None:
    """`dimension=value` for a record filling a closed dimension; None otherwise."""
    if record.dimension is None or record.value is None:
        return None
    return f"{record.dimension}={record.value}"


class Grouper:
    """Assigns records to groups, creating a group for a record like none seen yet.

    Statement clusters are greedy: a record joins the first cluster of its kind whose
    seed statement is similar enough, so the result depends on the order records come in;
    callers feed them sorted (user id, then record id) to make it deterministic."""

    def __init__(self, by: GroupBy, similarity: Similarity | None = None,
                 threshold: float = CLUSTER_THRESHOLD) -> None:
        self.by = by
        self.similarity = similarity or lexical_similarity
        self.threshold = threshold
        self.groups: dict[str, Group] = {}
        self._seeds: dict[str, list[tuple[str, str]]] = {}
        """kind → (seed statement, group key), in the order the clusters were made."""

    def key_of(self, record: Record, *, create: bool = True) -> str | None:
        """The group key of a record; None when it has none (no dimension value under
        `dimension`; no similar cluster when `create` is off)."""
        if self.by == "dimension":
            key = dimension_key(record)
            if key is not None and create:
                self.groups.setdefault(key, Group(key, record.kind)).statements[
                    record.statement] += 1
            return key if key is not None and (create or key in self.groups) else None
        seeds = self._seeds.setdefault(record.kind, [])
        for seed, key in seeds:
            if self.similarity(seed, record.statement) >= self.threshold:
                if create:
                    self.groups[key].statements[record.statement] += 1
                return key
        if not create:
            return None
        key = f"{record.kind}:{len(seeds) + 1}"
        seeds.append((record.statement, key))
        self.groups[key] = Group(key, record.kind, Counter({record.statement: 1}))
        return key

    def add_group(self, key: str, kind: str, statements: Iterable[str]) -> None:
        """Know a group made elsewhere (a stored report's): each statement seeds it."""
        said = list(statements)
        self.groups[key] = Group(key, kind, Counter(said))
        if self.by == "statement-cluster":
            self._seeds.setdefault(kind, []).extend((s, key) for s in said)

    def assign(self, records: Iterable[Record]) -> dict[str, list[Record]]:
        """Group key → the records in it."""
        out: dict[str, list[Record]] = {}
        for record in records:
            key = self.key_of(record)
            if key is not None:
                out.setdefault(key, []).append(record)
        return out


def in_order(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.user_id, r.id))
