"""How well confidences meet outcomes: Brier score, ECE, the reliability table, risk–coverage.

Pure functions over (confidence, 1 if right else 0) points, shared by the eval harness (the
label is "matched a labelled record"), the calibration fit (cross-validated figures) and the
live outcome counts (the label is what the user did), so every table reads the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

BINS = 10


class ReliabilityBin(BaseModel):
    """Records whose confidence fell in [lo, hi): how sure doxa was, how often it was right."""

    model_config = ConfigDict(frozen=True)

    lo: float
    hi: float
    count: int
    mean_confidence: float | None = None
    accuracy: float | None = None


class Calibration(BaseModel):
    """Confidence against matched: Brier score, expected calibration error, reliability table."""

    model_config = ConfigDict(frozen=True)

    n: int = 0
    brier: float | None = None
    ece: float | None = None
    bins: tuple[ReliabilityBin, ...] = ()


def bin_of(confidence: float, bins: int = BINS) -> int:
    """The reliability bin a confidence falls in; 1.0 falls in the last."""
    # The epsilon keeps 0.3 in [0.3, 0.4) despite 0.3 * 10 == 2.9999...
    return min(int(confidence * bins + 1e-9), bins - 1)


class BinCount(BaseModel):
    """What a reliability bin holds without its points: how many, how many right, and the
    sum of their confidences (so the mean is exact). The store keeps outcomes this way."""

    model_config = ConfigDict(frozen=True)

    bin: int
    n: int
    right: int
    confidence_sum: float


def bin_counts(points: Iterable[tuple[float, int]], bins: int = BINS) -> list[BinCount]:
    """Points folded into their bins (empty bins left out)."""
    totals: dict[int, tuple[int, int, float]] = {}
    for confidence, right in points:
        b = bin_of(confidence, bins)
        n, r, s = totals.get(b, (0, 0, 0.0))
        totals[b] = (n + 1, r + right, s + confidence)
    return [BinCount(bin=b, n=n, right=r, confidence_sum=s)
            for b, (n, r, s) in sorted(totals.items())]


def calibration_from_counts(counts: Iterable[BinCount], bins: int = BINS,
                            brier: float | None = None) -> Calibration:
    """ECE and the reliability table from bin counts (several rows of one bin add up);
    the Brier score needs the points, so it is whatever the caller knows."""
    merged: dict[int, tuple[int, int, float]] = {}
    for c in counts:
        n, r, s = merged.get(c.bin, (0, 0, 0.0))
        merged[c.bin] = (n + c.n, r + c.right, s + c.confidence_sum)
    total = sum(n for n, _, _ in merged.values())
    table: list[ReliabilityBin] = []
    ece = 0.0
    for b in range(bins):
        n, right, conf_sum = merged.get(b, (0, 0, 0.0))
        if not n:
            table.append(ReliabilityBin(lo=b / bins, hi=(b + 1) / bins, count=0))
            continue
        conf, acc = conf_sum / n, right / n
        ece += n / total * abs(acc - conf)
        table.append(ReliabilityBin(lo=b / bins, hi=(b + 1) / bins, count=n,
                                    mean_confidence=conf, accuracy=acc))
    return Calibration(n=total, brier=brier, ece=ece if total else None, bins=tuple(table))


def calibration(points: Sequence[tuple[float, int]], bins: int = BINS) -> Calibration:
    """Brier score, ECE and the reliability table; confidence 1.0 falls in the last bin."""
    brier = sum((c - y) ** 2 for c, y in points) / len(points) if points else None
    return calibration_from_counts(bin_counts(points, bins), bins, brier)


class RiskPoint(BaseModel):
    """Keep only the records at or above `threshold`: how many stay, and how many of those
    are right. A delivery layer choosing its threshold reads this row."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    kept: int
    coverage: float
    precision: float


COVERAGE_STEPS = 10


def risk_coverage(points: Sequence[tuple[float, int]],
                  steps: int = COVERAGE_STEPS) -> tuple[RiskPoint, ...]:
    """Precision of the records kept at each threshold, from keeping all down to keeping the
    surest tenth: the thresholds are the confidences at which 100%, 90%... of the records are
    kept (equal confidences are kept together, so a row may keep more than its share)."""
    if not points:
        return ()
    ranked = sorted((c for c, _ in points), reverse=True)
    thresholds = sorted({ranked[max(0, round(len(ranked) * k / steps) - 1)]
                         for k in range(1, steps + 1)})
    rows = []
    for t in thresholds:
        kept = [y for c, y in points if c >= t]
        rows.append(RiskPoint(threshold=t, kept=len(kept), coverage=len(kept) / len(points),
                              precision=sum(kept) / len(kept)))
    return tuple(rows)
