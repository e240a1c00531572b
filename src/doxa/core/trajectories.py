"""Discovery across users: how records move (goal "evaluating" → "business case" → ...).

Pure: takes user models, returns counted transitions and the most common paths, so the
same aggregation runs over a store, an export or a test's plain data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel

from doxa.model.records import Kind, Record, UserModel

GroupBy = Literal["context", "statement"]


class Transition(BaseModel):
    source: str
    target: str
    users: int


class PathCount(BaseModel):
    path: list[str]
    users: int


class TrajectoryReport(BaseModel):
    kind: Kind
    group_by: GroupBy
    users: int
    transitions: list[Transition]
    paths: list[PathCount]


def _label(record: Record, group_by: GroupBy) -> str:
    return record.context if group_by == "context" else record.statement.strip().casefold()


def user_path(model: UserModel, kind: Kind, group_by: GroupBy) -> list[str]:
    """The user's records of a kind in the order they began (event time), repeats folded."""
    ordered = sorted((r for r in model.records if r.kind == kind),
                     key=lambda r: (r.valid_from, r.id))
    path: list[str] = []
    for record in ordered:
        label = _label(record, group_by)
        if not path or path[-1] != label:
            path.append(label)
    return path


def aggregate(models: Iterable[UserModel], *, kind: Kind = "goal",
              group_by: GroupBy = "context", top: int = 10) -> TrajectoryReport:
    """Count each transition once per user and the most common whole paths."""
    transitions: Counter[tuple[str, str]] = Counter()
    paths: Counter[tuple[str, ...]] = Counter()
    users = 0
    for model in models:
        path = user_path(model, kind, group_by)
        if not path:
            continue
        users += 1
        paths[tuple(path)] += 1
        transitions.update(set(pairwise(path)))
    return TrajectoryReport(
        kind=kind, group_by=group_by, users=users,
        transitions=[Transition(source=a, target=b, users=n)
                     for (a, b), n in sorted(transitions.items(), key=lambda x: (-x[1], x[0]))],
        paths=[PathCount(path=list(p), users=n)
               for p, n in sorted(paths.items(), key=lambda x: (-x[1], x[0]))[:top]],
    )
