"""Segment priors: what is true of the users who share a user's declared traits.

When one user's model is cold or a dimension is below threshold, delivery falls back to
the segment (`model.value(dim, fallback="segment")`): the users whose traits equal this
user's on the keys asked for (plan, role, ...), each counted once by their surest active
answer. Only counts and shares leave the segment, never another user's record. Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from doxa.core.groups import Grouper, in_order
from doxa.core.profile import UserProfile
from doxa.core.similarity import Similarity
from doxa.model.records import DimensionShares, Segment, SegmentAnswer, UserModel

MAX_ANSWERS = 5
"""Statements kept per kind: the commonest; the rest are the tail delivery never picks."""


def _shares(counts: Counter[str], support: int) -> dict[str, float]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {value: n / support for value, n in ordered}


def segment_of(profile: UserProfile, others: Iterable[UserProfile], by: Sequence[str], *,
               min_confidence: float = 0.6,
               similarity: Similarity | None = None) -> Segment:
    """The segment of `profile` among `others` (the user is never their own segment):
    users with the same value of every trait in `by`. A user without one of those traits
    has no segment (no members), so nothing is guessed from users unlike them."""
    wanted = {k: profile.traits.get(k) for k in by}
    if not by or any(v is None for v in wanted.values()):
        return Segment(traits={k: v for k, v in wanted.items() if v is not None})
    traits = {k: v for k, v in wanted.items() if v is not None}
    members = [p.model for p in others if p.model.user_id != profile.model.user_id
               and all(p.traits.get(k) == v for k, v in traits.items())]
    return Segment(traits=traits, members=len(members),
                   dimensions=_dimensions(members, min_confidence),
                   kinds=_kinds(members, min_confidence, similarity))


def _dimensions(members: Sequence[UserModel], floor: float) -> dict[str, DimensionShares]:
    counts: dict[str, Counter[str]] = {}
    for model in members:
        for dimension, records in model.dimensions().items():
            best = records[0]
            if best.confidence >= floor:
                answer = best.value if best.value is not None else best.statement
                counts.setdefault(dimension, Counter())[answer] += 1
    return {dim: DimensionShares(support=sum(c.values()), shares=_shares(c, sum(c.values())))
            for dim, c in sorted(counts.items())}


def _kinds(members: Sequence[UserModel], floor: float,
           similarity: Similarity | None) -> dict[str, list[SegmentAnswer]]:
    grouper = Grouper("statement-cluster", similarity)
    users: dict[str, set[str]] = {}
    holders: dict[str, set[str]] = {}
    for model in members:
        sure = [r for r in model.active() if r.confidence >= floor]
        for key, records in grouper.assign(in_order(sure)).items():
            users.setdefault(key, set()).add(model.user_id)
            holders.setdefault(records[0].kind, set()).add(model.user_id)
    out: dict[str, list[SegmentAnswer]] = {}
    for kind in sorted(holders):
        support = len(holders[kind])
        ranked = sorted((k for k in users if grouper.groups[k].kind == kind),
                        key=lambda k: (-len(users[k]), grouper.groups[k].label))
        out[kind] = [SegmentAnswer(kind=kind, statement=grouper.groups[k].label,
                                   share=len(users[k]) / support, support=support)
                     for k in ranked[:MAX_ANSWERS]]
    return out
