"""Leverage across users: which record groups separate users who reach an outcome from
those who do not, with the counts and an interval behind every figure.

For a group (a dimension value, or a cluster of similar statements), the users compared
are split by whether they held it before the outcome: `a` of the `n1` holders reached
it, `c` of the `n2` others did. The lift is the risk ratio (a/n1) / (c/n2) and its
interval Katz's log interval, exp(ln RR ± z·√(1/a − 1/n1 + 1/c − 1/n2)), with 0.5 added
to every cell when one is zero (Haldane), so a group every holder of which converted still
gets a finite, wide interval. A group is ranked by how far its interval keeps from 1.

These are associations across users, not causes: holders may differ from the others in
ways the model does not record. Every figure comes with its counts so a reader can judge.
Pure: profiles in, a report out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from statistics import median
from typing import Literal

from pydantic import BaseModel, Field

from doxa.core.groups import GroupBy, Grouper, in_order
from doxa.core.profile import UserProfile
from doxa.core.similarity import Similarity
from doxa.model.records import Record, UserModel

Z_95 = 1.959963984540054
ASSOCIATION_NOTE = (
    "Associations across users, not proven causes: users holding a group reached the "
    "outcome at a different rate, which other differences between them may explain. "
    "Each figure shows the counts behind it.")
Appears = Literal["early", "middle", "late"]


class RiskRatio(BaseModel):
    """A lift with its interval and the four counts it comes from."""

    with_outcome: int
    with_total: int
    without_outcome: int
    without_total: int
    lift: float
    low: float
    high: float
    corrected: bool = False
    """True when 0.5 was added to each cell because one was zero."""


def risk_ratio(a: int, n1: int, c: int, n2: int, z: float = Z_95) -> RiskRatio:
    """The risk ratio (a/n1)/(c/n2) and its Katz log interval (see the module doc)."""
    if not (0 <= a <= n1 and 0 <= c <= n2 and n1 > 0 and n2 > 0):
        raise ValueError(f"counts must satisfy 0 <= a <= n1, 0 <= c <= n2, n1, n2 > 0: "
                         f"a={a} n1={n1} c={c} n2={n2}")
    corrected = 0 in (a, n1 - a, c, n2 - c)
    fa, fn1, fc, fn2 = (a + 0.5, n1 + 1.0, c + 0.5, n2 + 1.0) if corrected else (
        float(a), float(n1), float(c), float(n2))
    ratio = (fa / fn1) / (fc / fn2)
    se = math.sqrt(1 / fa - 1 / fn1 + 1 / fc - 1 / fn2)
    log_rr = math.log(ratio)
    return RiskRatio(with_outcome=a, with_total=n1, without_outcome=c, without_total=n2,
                     lift=ratio, low=math.exp(log_rr - z * se), high=math.exp(log_rr + z * se),
                     corrected=corrected)


def strength(rr: RiskRatio) -> float:
    """How far the interval keeps from 1 on the log scale (0 when it spans 1)."""
    return max(0.0, math.log(rr.low), -math.log(rr.high))


class GroupLeverage(BaseModel):
    """One record group: who holds it, the outcome rate with and without it, the lift."""

    key: str
    kind: str
    label: str
    statements: list[str] = Field(default_factory=list)
    """Its commonest statements (at most five)."""
    stats: RiskRatio
    rate_with: float
    rate_without: float
    strength: float
    position: float | None = None
    """Median place where holders came to hold it, 0 = their first record, 1 = last."""
    appears: Appears | None = None
    days_before_outcome: float | None = None
    """Median days from the group's first record to the outcome, over holders who reached it."""


class HeldLeverage(BaseModel):
    """One record of a user with the leverage of its group."""

    record_id: str
    kind: str
    statement: str
    confidence: float
    group: str
    lift: float
    low: float
    high: float
    strength: float
    direction: Literal["toward", "away from"]
    """Holders reach the outcome more (toward) or less (away from) often than others."""


class LeverageReport(BaseModel):
    """Record groups ranked by how strongly holding them goes with the outcome."""

    outcome: str
    against: str | None = None
    by: GroupBy
    min_users: int
    users: int
    """Users compared: those with the outcome and those counted against them."""
    reached: int
    note: str = ASSOCIATION_NOTE
    groups: list[GroupLeverage] = Field(default_factory=list)

    def for_user(self, model: UserModel, *,
                 similarity: Similarity | None = None) -> list[HeldLeverage]:
        """The user's active records whose groups most separate the outcome, strongest
        first: what, if it changed, goes with a different trajectory (an association)."""
        grouper = _grouper_for(self, similarity)
        by_key = {g.key: g for g in self.groups}
        held: list[HeldLeverage] = []
        for record in model.active():
            key = grouper.key_of(record, create=False)
            group = by_key.get(key or "")
            if group is None:
                continue
            s = group.stats
            held.append(HeldLeverage(
                record_id=record.id, kind=record.kind, statement=record.statement,
                confidence=record.confidence, group=group.key, lift=s.lift, low=s.low,
                high=s.high, strength=group.strength,
                direction="toward" if s.lift >= 1.0 else "away from"))
        return sorted(held, key=lambda h: (-h.strength, -abs(math.log(h.lift)), h.record_id))


def _grouper_for(report: LeverageReport, similarity: Similarity | None) -> Grouper:
    """A grouper that knows the report's groups: each statement seeds its group."""
    grouper = Grouper(report.by, similarity)
    for group in report.groups:
        grouper.add_group(group.key, group.kind, group.statements)
    return grouper


def _held(profile: UserProfile, cutoff: datetime | None) -> list[Record]:
    """The records the user held before `cutoff` (all, without one); retracted never."""
    return [r for r in profile.model.records if r.status != "retracted"
            and (cutoff is None or r.valid_from <= cutoff)]


def _position(record: Record, held: Sequence[Record]) -> float:
    order = sorted(held, key=lambda r: (r.valid_from, r.id))
    return 0.0 if len(order) < 2 else order.index(record) / (len(order) - 1)


def _appears(position: float) -> Appears:
    return "early" if position < 1 / 3 else "late" if position > 2 / 3 else "middle"


def leverage(profiles: Iterable[UserProfile], outcome: str, *, against: str | None = None,
             by: GroupBy = "statement-cluster", min_users: int = 3,
             similarity: Similarity | None = None, kinds: Sequence[str] | None = None,
             z: float = Z_95) -> LeverageReport:
    """Rank record groups by how strongly holding them goes with reaching `outcome`.

    Compared: users who reached `outcome`, against users who reached `against` (and not
    `outcome`) or, without it, every other user. A record counts if the user held it
    before their outcome (either one). Groups held by fewer than `min_users`, or by every
    compared user, are left out (no comparison is possible)."""
    compared: list[tuple[UserProfile, bool, list[Record]]] = []
    for p in sorted(profiles, key=lambda p: p.model.user_id):
        reached = outcome in p.outcomes
        if not reached and against is not None and against not in p.outcomes:
            continue
        cutoff = p.outcomes.get(outcome) if reached else (
            p.outcomes.get(against) if against is not None else None)
        held = [r for r in _held(p, cutoff) if kinds is None or r.kind in kinds]
        compared.append((p, reached, held))
    grouper = Grouper(by, similarity)
    holders: dict[str, dict[str, tuple[bool, Record, list[Record]]]] = {}
    for p, reached, held in compared:
        for key, records in grouper.assign(in_order(held)).items():
            first = min(records, key=lambda r: (r.valid_from, r.id))
            holders.setdefault(key, {})[p.model.user_id] = (reached, first, held)
    total = len(compared)
    reached_total = sum(1 for _, reached, _ in compared if reached)
    outcome_at = {p.model.user_id: p.outcomes.get(outcome) for p, _, _ in compared}
    groups: list[GroupLeverage] = []
    for key, users in holders.items():
        n1 = len(users)
        if n1 < min_users or n1 == total:
            continue
        a = sum(1 for reached, _, _ in users.values() if reached)
        stats = risk_ratio(a, n1, reached_total - a, total - n1, z)
        positions = [_position(first, held) for _, first, held in users.values()]
        days = [(at - first.valid_from).total_seconds() / 86400 for uid, (reached, first, _)
                in users.items() if reached and (at := outcome_at[uid]) is not None]
        group = grouper.groups[key]
        middle = median(positions)
        groups.append(GroupLeverage(
            key=key, kind=group.kind, label=group.label,
            statements=[s for s, _ in group.statements.most_common(5)], stats=stats,
            rate_with=a / n1, rate_without=(reached_total - a) / (total - n1),
            strength=strength(stats), position=middle, appears=_appears(middle),
            days_before_outcome=median(days) if days else None))
    groups.sort(key=lambda g: (-g.strength, -abs(math.log(g.stats.lift)),
                               -g.stats.with_total, g.key))
    return LeverageReport(outcome=outcome, against=against, by=by, min_users=min_users,
                          users=total, reached=reached_total, groups=groups)
