"""Outcomes as labels: every delivery outcome says whether the record that drove it was right.

Engaged and converted count as right, ignored and dismissed as wrong. The store keeps, per
user, counts per (profile, model, prompt version, kind, confidence bin) of the confidence
delivery read, so the live reliability table is a sum, a drift check is one comparison,
and `doxa eval calibrate --from-outcomes` refits from them. The counts are the user's
data like any other: they go when the user is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict

from doxa.calibration.reliability import BinCount, Calibration, bin_of, calibration_from_counts

RIGHT: Final = frozenset({"engaged", "converted"})
UNCALIBRATED: Final = ""
"""The profile name of outcomes delivered without a profile (the evidence score)."""
DRIFT_ECE: Final = 0.1
DRIFT_MIN_OUTCOMES: Final = 50


class OutcomeCount(BaseModel):
    """One row of outcome counts (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    profile: str = UNCALIBRATED
    model: str = ""
    prompt_version: str = ""
    kind: str
    bin: int
    n: int = 1
    right: int = 0
    confidence_sum: float = 0.0


def outcome_count(user_id: str, *, profile: str | None, model: str, prompt_version: str,
                  kind: str, confidence: float, outcome: str) -> OutcomeCount:
    """The count one outcome adds, for a record delivered at `confidence`."""
    return OutcomeCount(user_id=user_id, profile=profile or UNCALIBRATED, model=model,
                        prompt_version=prompt_version, kind=kind, bin=bin_of(confidence),
                        n=1, right=int(outcome in RIGHT), confidence_sum=confidence)


class LiveReliability(BaseModel):
    """One profile's reliability from outcomes, and whether it drifted."""

    model_config = ConfigDict(frozen=True)

    profile: str
    model: str
    prompt_version: str
    outcomes: Calibration
    kinds: dict[str, int]
    drift: bool
    """ECE from outcomes above the threshold, with enough outcomes to say so."""


def live_reliability(counts: Iterable[OutcomeCount], *, max_ece: float = DRIFT_ECE,
                     min_outcomes: int = DRIFT_MIN_OUTCOMES) -> list[LiveReliability]:
    """Per (profile, model, prompt version), the reliability table the outcomes give."""
    groups: dict[tuple[str, str, str], list[OutcomeCount]] = {}
    for c in counts:
        groups.setdefault((c.profile, c.model, c.prompt_version), []).append(c)
    found = []
    for (profile, model, version), rows in sorted(groups.items()):
        table = calibration_from_counts(as_bins(rows))
        kinds: dict[str, int] = {}
        for row in rows:
            kinds[row.kind] = kinds.get(row.kind, 0) + row.n
        drift = table.n >= min_outcomes and (table.ece or 0.0) > max_ece
        found.append(LiveReliability(profile=profile, model=model, prompt_version=version,
                                     outcomes=table, kinds=dict(sorted(kinds.items())),
                                     drift=drift))
    return found


def as_bins(rows: Sequence[OutcomeCount]) -> list[BinCount]:
    return [BinCount(bin=r.bin, n=r.n, right=r.right, confidence_sum=r.confidence_sum)
            for r in rows]
