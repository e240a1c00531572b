"""Scoring: pure functions from matched cases to precision, recall, calibration and cost.

Conventions, so every number can be recomputed by hand:
- A true positive is a matched pair; a false positive an unmatched *active* predicted record
  (superseded or achieved records the fixture says nothing about are history, not errors);
  a false negative an unmatched expected record.
- With nothing predicted and nothing expected, precision = recall = F1 = 1; otherwise an
  empty denominator gives 0 (predicting nothing when something was expected scores 0).
- Suite precision/recall/F1 are micro-averaged (counts summed over cases); `macro_f1` is
  the mean of the cases' F1.
- Evidence precision/recall are micro-averaged over matched pairs whose expected record
  lists evidence; None when there is nothing to measure.
- Calibration compares each compared predicted record's confidence with 1 if it matched,
  else 0: Brier score, and the expected calibration error over ten equal-width bins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from doxa.calibration.reliability import BINS as BINS
from doxa.calibration.reliability import Calibration as Calibration
from doxa.calibration.reliability import ReliabilityBin as ReliabilityBin
from doxa.calibration.reliability import RiskPoint, calibration, risk_coverage
from doxa.eval.fixtures import ExpectedLink, ExpectedRecord, ForbiddenRecord
from doxa.eval.match import Matching, PredictedRecord
from doxa.model.records import KINDS, Kind
from doxa.usage import Usage


class PRF(BaseModel):
    """Counts and the precision, recall and F1 they give."""

    model_config = ConfigDict(frozen=True)

    tp: int = 0
    fp: int = 0
    fn: int = 0
    precision: float = 1.0
    recall: float = 1.0
    f1: float = 1.0


def prf(tp: int, fp: int, fn: int) -> PRF:
    """Precision, recall and F1 from counts, with the conventions in the module docstring."""
    if tp + fp + fn == 0:
        return PRF()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, f1=f1)


class EvidenceScore(BaseModel):
    """Evidence ids of matched pairs: how many cited were right, how many labelled were cited."""

    model_config = ConfigDict(frozen=True)

    pairs: int = 0
    hits: int = 0
    predicted: int = 0
    expected: int = 0
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None


def evidence_score(pairs: int, hits: int, predicted: int, expected: int) -> EvidenceScore:
    precision = hits / predicted if predicted else None
    recall = hits / expected if expected else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EvidenceScore(pairs=pairs, hits=hits, predicted=predicted, expected=expected,
                         precision=precision, recall=recall, f1=f1)


class DimensionScore(BaseModel):
    """For matched expected records with this dimension: how often the value was right."""

    model_config = ConfigDict(frozen=True)

    n: int = 0
    correct: int = 0
    accuracy: float | None = None


USAGE_FIELDS = ("llm_calls", "input_tokens", "output_tokens", "cost_usd", "latency_s",
                "reasks", "repairs", "reask_input_tokens", "calls_per_calling_batch",
                "input_tokens_per_case", "input_tokens_per_found")
"""What a run cost, by name: totals, then the ratios that say what a found record costs."""


def usage_values(usage: Usage, metrics: SuiteMetrics) -> dict[str, float | None]:
    """Usage totals and ratios: calls per calling batch, input tokens per case that ran and
    per expected record found (None where the denominator is 0 or was not counted)."""
    def ratio(total: float, count: int | None) -> float | None:
        return total / count if count else None

    return {
        "llm_calls": float(usage.llm_calls), "input_tokens": float(usage.input_tokens),
        "output_tokens": float(usage.output_tokens), "cost_usd": usage.cost_usd,
        "latency_s": usage.latency_s,
        "reasks": None if usage.reasks is None else float(usage.reasks),
        "repairs": None if usage.repairs is None else float(usage.repairs),
        "reask_input_tokens": (None if usage.reask_input_tokens is None
                               else float(usage.reask_input_tokens)),
        "calls_per_calling_batch": ratio(usage.llm_calls, usage.calling_batches),
        "input_tokens_per_case": ratio(usage.input_tokens, metrics.cases),
        "input_tokens_per_found": ratio(usage.input_tokens, metrics.overall.tp),
    }


@dataclass(frozen=True)
class ScoredCase:
    """One case's predictions, labels and matching: the input to every metric."""

    predicted: Sequence[PredictedRecord]
    expected: Sequence[ExpectedRecord]
    forbidden: Sequence[ForbiddenRecord]
    matching: Matching
    multi_batch: bool = False
    calibrated: bool = True
    """False when the confidences are a baseline's fixed stand-in: no calibration is scored."""
    links: Sequence[ExpectedLink] | None = None
    """The case's labelled causal links (None: the case does not label links)."""

    def matched_ids(self) -> set[str]:
        return {p.predicted_id for p in self.matching.pairs}

    def compared(self) -> list[PredictedRecord]:
        """Active predicted records, and matched ones in any status."""
        matched = self.matched_ids()
        return [p for p in self.predicted if p.status == "active" or p.id in matched]

    def matched_pairs(self) -> list[tuple[PredictedRecord, ExpectedRecord]]:
        by_id = {p.id: p for p in self.predicted}
        return [(by_id[m.predicted_id], self.expected[m.expected_index])
                for m in self.matching.pairs]


def link_counts(case: ScoredCase) -> tuple[int, int, int] | None:
    """(tp, fp, fn) over (from, relation, to) after record matching: a predicted link is
    right when both its ends are matched to the expected records a label links so. None
    for a case that does not label links."""
    if case.links is None:
        return None
    index = {m.predicted_id: m.expected_index for m in case.matching.pairs}
    expected = {(link.source, link.relation, link.target) for link in case.links}
    predicted = {(index.get(p.id), relation, index.get(target))
                 for p in case.predicted if p.status == "active"
                 for relation, target in p.links}
    tp = len(predicted & expected)
    return tp, len(predicted) - tp, len(expected) - tp


def counts_by_kind(case: ScoredCase) -> dict[Kind, tuple[int, int, int]]:
    """(tp, fp, fn) for each kind."""
    matched_p = case.matched_ids()
    matched_e = {m.expected_index for m in case.matching.pairs}
    out: dict[Kind, tuple[int, int, int]] = {}
    for kind in KINDS:
        tp = sum(1 for n, e in enumerate(case.expected) if e.kind == kind and n in matched_e)
        fn = sum(1 for n, e in enumerate(case.expected) if e.kind == kind and n not in matched_e)
        fp = sum(1 for p in case.predicted
                 if p.kind == kind and p.status == "active" and p.id not in matched_p)
        out[kind] = (tp, fp, fn)
    return out


def evidence_counts(case: ScoredCase, kind: str | None = None) -> tuple[int, int, int, int]:
    """(pairs, hits, predicted, expected) over matched pairs whose label lists evidence
    (only labels of `kind` when given)."""
    pairs = hits = predicted = expected = 0
    for pred, exp in case.matched_pairs():
        if not exp.evidence or (kind is not None and exp.kind != kind):
            continue
        cited, labelled = set(pred.evidence), set(exp.evidence)
        pairs += 1
        hits += len(cited & labelled)
        predicted += len(cited)
        expected += len(labelled)
    return pairs, hits, predicted, expected


def calibration_points(case: ScoredCase) -> list[tuple[float, int]]:
    """(confidence, 1 if matched else 0) for each compared predicted record (none when
    the confidences are not the extractor's own)."""
    if not case.calibrated:
        return []
    matched = case.matched_ids()
    return [(p.confidence, int(p.id in matched)) for p in case.compared()]


def evidence_points(case: ScoredCase) -> list[tuple[float, int]]:
    """As `calibration_points`, with each record's evidence score instead of its confidence:
    the two differ when a calibration profile read the records (the before and the after)."""
    if not case.calibrated:
        return []
    matched = case.matched_ids()
    return [(p.features.evidence_score if p.features is not None else p.confidence,
             int(p.id in matched)) for p in case.compared()]


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    return bool(a == b)


def dimension_counts(case: ScoredCase) -> dict[str, tuple[int, int]]:
    """(n, correct) per dimension, over matched pairs whose label carries one.

    Right means the same dimension and the same value. A predicted record filed under the
    right dimension with no value is right too: schema-shaped extraction answers a free-text
    dimension (integration_needs) with null, and a closed one never without a listed value
    (validation drops it), so a null value says the dimension has no values to get wrong.
    """
    out: dict[str, tuple[int, int]] = {}
    for pred, exp in case.matched_pairs():
        if exp.dimension is None:
            continue
        right = pred.dimension == exp.dimension and (
            pred.value is None or _same_value(pred.value, exp.value))
        n, correct = out.get(exp.dimension, (0, 0))
        out[exp.dimension] = (n + 1, correct + int(right))
    return out


def answer_counts(case: ScoredCase, closed: frozenset[str]) -> dict[str, tuple[int, int]]:
    """(n, correct) per closed dimension: the typed answer delivery would read.

    Matching pairs records by statement, so a value doxa filed under a generated statement
    ("Where the user is in buying the product: business case") is never scored by
    `dimension_counts`. Here every active label with a value in a closed dimension is asked
    of the final model as `model.value(dimension)` asks it: the most confident active
    predicted record of that dimension with a value; none, or another value, is wrong.
    """
    out: dict[str, tuple[int, int]] = {}
    for exp in case.expected:
        if exp.dimension not in closed or exp.value is None or exp.status != "active":
            continue
        held = [p for p in case.predicted if p.status == "active"
                and p.dimension == exp.dimension and p.value is not None]
        answer = max(held, key=lambda p: (p.confidence, p.id), default=None)
        right = answer is not None and _same_value(answer.value, exp.value)
        n, correct = out.get(exp.dimension, (0, 0))
        out[exp.dimension] = (n + 1, correct + int(right))
    return out


class CaseMetrics(BaseModel):
    """One case's scores."""

    model_config = ConfigDict(frozen=True)

    overall: PRF
    per_kind: dict[Kind, PRF]
    evidence: EvidenceScore
    forbidden_total: int = 0
    forbidden_violations: int = 0
    kind_mismatches: int = 0
    status_total: int = 0
    status_correct: int = 0
    brier: float | None = None
    links: PRF | None = None
    """Causal links, for a case that labels them."""


def _sum3(rows: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
    return (sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows))


def case_metrics(case: ScoredCase) -> CaseMetrics:
    """Every per-case score; status counts only for multi-batch cases."""
    by_kind = counts_by_kind(case)
    status = case.matching.status_pairs if case.multi_batch else ()
    return CaseMetrics(
        overall=prf(*_sum3(list(by_kind.values()))),
        per_kind={k: prf(*v) for k, v in by_kind.items()},
        evidence=evidence_score(*evidence_counts(case)),
        forbidden_total=len(case.forbidden),
        forbidden_violations=len({h.forbidden_index for h in case.matching.forbidden_hits}),
        kind_mismatches=len(case.matching.kind_mismatches),
        status_total=len(status), status_correct=sum(1 for s in status if s.correct),
        brier=calibration(calibration_points(case)).brier,
        links=None if (counted := link_counts(case)) is None else prf(*counted),
    )


class SuiteMetrics(BaseModel):
    """A run's scores over all cases that ran (errored cases are counted, not scored)."""

    model_config = ConfigDict(frozen=True)

    cases: int = 0
    errored: int = 0
    overall: PRF = PRF()
    per_kind: dict[Kind, PRF] = {}
    macro_f1: float | None = None
    evidence: EvidenceScore = EvidenceScore()
    forbidden_total: int = 0
    forbidden_violations: int = 0
    kind_mismatches: int = 0
    status_total: int = 0
    status_correct: int = 0
    status_accuracy: float | None = None
    calibration: Calibration = Calibration()
    evidence_calibration: Calibration = Calibration()
    """The same table for the evidence scores: the records before any calibration profile."""
    risk_coverage: tuple[RiskPoint, ...] = ()
    """Precision of the records kept at each confidence threshold, and how many are kept."""
    evidence_risk_coverage: tuple[RiskPoint, ...] = ()
    value_accuracy: dict[str, DimensionScore] = {}
    answer_accuracy: dict[str, DimensionScore] = {}
    """Per closed dimension of the run's schema: labelled values the final model answers."""
    links: PRF | None = None
    """Causal links (from, relation, to) over the cases that label them (None: none do)."""
    link_cases: int = 0


def _dimensions(cases: Sequence[ScoredCase],
                count: Callable[[ScoredCase], dict[str, tuple[int, int]]] = dimension_counts,
                ) -> dict[str, DimensionScore]:
    totals: dict[str, tuple[int, int]] = {}
    for case in cases:
        for dim, (n, correct) in count(case).items():
            before = totals.get(dim, (0, 0))
            totals[dim] = (before[0] + n, before[1] + correct)
    return {dim: DimensionScore(n=n, correct=c, accuracy=c / n if n else None)
            for dim, (n, c) in sorted(totals.items())}


def suite_metrics(cases: Sequence[ScoredCase], errored: int = 0,
                  closed_dimensions: frozenset[str] = frozenset()) -> SuiteMetrics:
    """Micro-averaged scores over the cases, plus macro F1 and calibration.

    `closed_dimensions` (from the run's schema) turns on the typed-answer accuracy."""
    per_case = [case_metrics(c) for c in cases]
    by_kind = {k: _sum3([counts_by_kind(c)[k] for c in cases]) for k in KINDS}
    status_total = sum(m.status_total for m in per_case)
    status_correct = sum(m.status_correct for m in per_case)
    ev = [evidence_counts(c) for c in cases]
    return SuiteMetrics(
        cases=len(cases), errored=errored,
        overall=prf(*_sum3(list(by_kind.values()))),
        per_kind={k: prf(*v) for k, v in by_kind.items()},
        macro_f1=sum(m.overall.f1 for m in per_case) / len(per_case) if per_case else None,
        evidence=evidence_score(*(sum(e[i] for e in ev) for i in range(4))),
        forbidden_total=sum(m.forbidden_total for m in per_case),
        forbidden_violations=sum(m.forbidden_violations for m in per_case),
        kind_mismatches=sum(m.kind_mismatches for m in per_case),
        status_total=status_total, status_correct=status_correct,
        status_accuracy=status_correct / status_total if status_total else None,
        calibration=calibration(points := [p for c in cases for p in calibration_points(c)]),
        evidence_calibration=calibration(
            before := [p for c in cases for p in evidence_points(c)]),
        risk_coverage=risk_coverage(points), evidence_risk_coverage=risk_coverage(before),
        value_accuracy=_dimensions(cases),
        answer_accuracy=_dimensions(
            cases, lambda case: answer_counts(case, closed_dimensions)),
        links=prf(*_sum3(linked)) if (linked := [c for c in map(link_counts, cases)
                                                 if c is not None]) else None,
        link_cases=len(linked),
    )


HIGHER_IS_BETTER = (
    "precision", "recall", "f1", "macro_f1", "evidence_precision", "evidence_recall",
    "evidence_f1", "status_accuracy", "forbidden_pass_rate", "link_precision", "link_recall",
    "link_f1",
)
LOWER_IS_BETTER = ("brier", "ece", "evidence_brier", "evidence_ece", "forbidden_violations",
                   "kind_mismatches")
CEILINGS = ("ece", "brier")
"""Lower-is-better metrics `--fail-under` takes as a ceiling (`ece=0.1`: fail above it)."""


def metric_values(m: SuiteMetrics) -> dict[str, float | None]:
    """The headline numbers by name (`f1`, `goal.recall`, `ece`...): for thresholds and diffs."""
    values: dict[str, float | None] = {
        "precision": m.overall.precision, "recall": m.overall.recall, "f1": m.overall.f1,
        "macro_f1": m.macro_f1, "evidence_precision": m.evidence.precision,
        "evidence_recall": m.evidence.recall, "evidence_f1": m.evidence.f1,
        "status_accuracy": m.status_accuracy,
        "forbidden_pass_rate": (1 - m.forbidden_violations / m.forbidden_total
                                if m.forbidden_total else None),
        "brier": m.calibration.brier, "ece": m.calibration.ece,
        "evidence_brier": m.evidence_calibration.brier,
        "evidence_ece": m.evidence_calibration.ece,
        "forbidden_violations": float(m.forbidden_violations),
        "kind_mismatches": float(m.kind_mismatches),
        "link_precision": m.links.precision if m.links else None,
        "link_recall": m.links.recall if m.links else None,
        "link_f1": m.links.f1 if m.links else None,
    }
    for kind, score in sorted(m.per_kind.items()):
        values.update({f"{kind}.precision": score.precision, f"{kind}.recall": score.recall,
                       f"{kind}.f1": score.f1})
    for dim, acc in m.value_accuracy.items():
        values[f"value.{dim}"] = acc.accuracy
    for dim, acc in m.answer_accuracy.items():
        values[f"answer.{dim}"] = acc.accuracy
    return values

