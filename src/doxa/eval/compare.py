"""Comparing two runs: metric deltas, then the cases that got worse and better.

A case got worse when its F1 fell, or its F1 held and it matched more forbidden records;
a case that errored in one run and not the other changed by its whole F1.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from doxa.eval.metrics import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    USAGE_FIELDS,
    metric_values,
    usage_values,
)
from doxa.eval.runfile import CaseResult, RunFile
from doxa.eval.sidebyside import SideBySide, doxa_and_baseline, side_by_side
from doxa.eval.views import RecordView, record_views


class MetricDelta(BaseModel):
    """One metric in both runs; `better` says whether B improved on A (None: no direction)."""

    model_config = ConfigDict(frozen=True)

    name: str
    a: float | None
    b: float | None
    delta: float | None
    better: bool | None


class CaseChange(BaseModel):
    """A case whose score moved between the runs, with what each run predicted."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    f1_a: float | None
    f1_b: float | None
    violations_a: int = 0
    violations_b: int = 0
    expected: tuple[RecordView, ...] = ()
    predicted_a: tuple[RecordView, ...] = ()
    predicted_b: tuple[RecordView, ...] = ()
    error_a: str | None = None
    error_b: str | None = None


class RunLabel(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    model: str
    prompt_version: str
    matcher: str
    oracle: bool
    baseline: str | None = None


class Comparison(BaseModel):
    """What `doxa eval compare A B` reports."""

    model_config = ConfigDict(frozen=True)

    a: RunLabel
    b: RunLabel
    metrics: tuple[MetricDelta, ...]
    worse: tuple[CaseChange, ...] = ()
    better: tuple[CaseChange, ...] = ()
    cases_in_both: int = 0
    only_a: tuple[str, ...] = ()
    only_b: tuple[str, ...] = ()
    side_by_side: SideBySide | None = None
    """When exactly one run is a baseline: doxa beside it, baseline-only finds first."""


def _delta(name: str, a: float | None, b: float | None) -> MetricDelta:
    delta = None if a is None or b is None else b - a
    better = None
    if delta is not None and delta != 0 and name not in USAGE_FIELDS:
        if name in LOWER_IS_BETTER:
            better = delta < 0
        elif name in HIGHER_IS_BETTER or "." in name:
            better = delta > 0
    return MetricDelta(name=name, a=a, b=b, delta=delta, better=better)


def metric_deltas(a: RunFile, b: RunFile) -> list[MetricDelta]:
    """Every headline metric and usage total of A and B, in A's order then B's new ones."""
    va, vb = metric_values(a.metrics), metric_values(b.metrics)
    names = list(dict.fromkeys([*va, *vb]))
    deltas = [_delta(n, va.get(n), vb.get(n)) for n in names]
    ua, ub = usage_values(a.usage, a.metrics), usage_values(b.usage, b.metrics)
    deltas += [_delta(field, ua[field], ub[field]) for field in USAGE_FIELDS]
    return deltas


def _score(result: CaseResult) -> tuple[float, int]:
    if result.metrics is None:
        return (-1.0, 0)
    return (result.metrics.overall.f1, -result.metrics.forbidden_violations)


def _change(a: CaseResult, b: CaseResult) -> CaseChange:
    expected, pred_a = record_views(a)
    _, pred_b = record_views(b)
    return CaseChange(
        case_id=a.case_id, f1_a=a.metrics.overall.f1 if a.metrics else None,
        f1_b=b.metrics.overall.f1 if b.metrics else None,
        violations_a=a.metrics.forbidden_violations if a.metrics else 0,
        violations_b=b.metrics.forbidden_violations if b.metrics else 0,
        expected=expected, predicted_a=pred_a, predicted_b=pred_b,
        error_a=a.error, error_b=b.error,
    )


def _label(run: RunFile, path: str) -> RunLabel:
    return RunLabel(path=path, model=run.model, prompt_version=run.prompt_version,
                    matcher=run.matcher, oracle=run.oracle, baseline=run.baseline)


def compare_runs(a: RunFile, b: RunFile, *, path_a: str = "A", path_b: str = "B") -> Comparison:
    """Metric deltas B − A, and the cases present in both whose score moved (largest first);
    with a baseline run on one side, doxa beside it as well."""
    in_b = {c.case_id: c for c in b.cases}
    moved = [(ca, in_b[ca.case_id]) for ca in a.cases
             if ca.case_id in in_b and _score(ca) != _score(in_b[ca.case_id])]
    gap = {ca.case_id: _score(cb)[0] - _score(ca)[0] for ca, cb in moved}
    worse = sorted((p for p in moved if _score(p[1]) < _score(p[0])),
                   key=lambda p: (gap[p[0].case_id], p[0].case_id))
    better = sorted((p for p in moved if _score(p[1]) > _score(p[0])),
                    key=lambda p: (-gap[p[0].case_id], p[0].case_id))
    in_a = {c.case_id for c in a.cases}
    return Comparison(
        a=_label(a, path_a), b=_label(b, path_b), metrics=tuple(metric_deltas(a, b)),
        worse=tuple(_change(*p) for p in worse), better=tuple(_change(*p) for p in better),
        only_a=tuple(sorted(in_a - set(in_b))), only_b=tuple(sorted(set(in_b) - in_a)),
        cases_in_both=len(in_a & set(in_b)),
        side_by_side=side_by_side(*pair) if (pair := doxa_and_baseline(a, b)) else None,
    )
