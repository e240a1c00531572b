"""doxa beside a baseline: the same scores per suite and per kind, and what only one found.

Both runs are scored over the cases they share and both answered (a case that errored in
either is left out of both, and named). A suite is a top-level folder of the run's suite
(`fixtures/eval` → `saas`, `ecommerce`...); a run over one folder is one suite. The finds
that matter first are the expected records the baseline matched and doxa did not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

from pydantic import BaseModel, ConfigDict

from doxa.errors import ConfigError
from doxa.eval.metrics import evidence_counts, evidence_score, suite_metrics
from doxa.eval.runfile import CaseResult, RunFile
from doxa.eval.views import RecordView, record_views
from doxa.model.records import KINDS

ALL = "all"


class Scores(BaseModel):
    """One run's scores over a group of cases (tokens are per case; None for a kind)."""

    model_config = ConfigDict(frozen=True)

    recall: float | None = None
    precision: float | None = None
    evidence_precision: float | None = None
    evidence_recall: float | None = None
    expected: int = 0
    found: int = 0
    input_tokens_per_case: float | None = None
    output_tokens_per_case: float | None = None


class GroupRow(BaseModel):
    """A suite folder (or a kind, or `all`) with doxa's scores and the baseline's."""

    model_config = ConfigDict(frozen=True)

    group: str
    cases: int
    doxa: Scores
    baseline: Scores


class Find(BaseModel):
    """An expected record one run matched and the other did not, with both runs' records."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    suite: str
    expected: RecordView
    found_by: RecordView
    other_predicted: tuple[RecordView, ...] = ()


class SideBySide(BaseModel):
    """What `compare` and `report --baseline` show when one run is a baseline."""

    model_config = ConfigDict(frozen=True)

    baseline: str
    suites: tuple[GroupRow, ...]
    kinds: tuple[GroupRow, ...]
    baseline_only: tuple[Find, ...] = ()
    """Expected records the baseline found and doxa missed: the first thing to read."""
    doxa_only: tuple[Find, ...] = ()
    left_out: tuple[str, ...] = ()
    """Cases not scored side by side: in one run only, or errored in either."""


def suite_of(result: CaseResult, suite: str) -> str:
    """The case's top-level folder under the run's suite; the suite's own name otherwise."""
    path = PurePath(result.path)
    try:
        parts = path.relative_to(suite).parts
    except ValueError:
        return path.parent.name
    if len(parts) > 1:
        return parts[0]
    return PurePath(suite).name if parts else path.parent.name  # no parts: a one-case suite


def _per_case(total: int, cases: int) -> float | None:
    return total / cases if cases else None


def _scores(results: Sequence[CaseResult], kind: str | None = None) -> Scores:
    scored = [r.scored() for r in results]
    metrics = suite_metrics(scored)
    counts = metrics.overall if kind is None else metrics.per_kind[kind]
    evidence = (metrics.evidence if kind is None else evidence_score(
        *(sum(e[i] for e in (evidence_counts(c, kind) for c in scored)) for i in range(4))))
    measured = counts.tp + counts.fp + counts.fn > 0
    tokens = kind is None and results
    return Scores(
        recall=counts.recall if measured else None,
        precision=counts.precision if measured else None,
        evidence_precision=evidence.precision, evidence_recall=evidence.recall,
        expected=counts.tp + counts.fn, found=counts.tp,
        input_tokens_per_case=_per_case(sum(r.usage.input_tokens for r in results),
                                        len(results)) if tokens else None,
        output_tokens_per_case=_per_case(sum(r.usage.output_tokens for r in results),
                                         len(results)) if tokens else None,
    )


def _row(group: str, doxa: Sequence[CaseResult], baseline: Sequence[CaseResult],
         kind: str | None = None) -> GroupRow:
    return GroupRow(group=group, cases=len(doxa), doxa=_scores(doxa, kind),
                    baseline=_scores(baseline, kind))


def _finds(finder: CaseResult, other: CaseResult, suite: str) -> list[Find]:
    """Expected records `finder` matched and `other` did not."""
    missed_by_other = {m.expected_index for m in finder.matching.pairs} - {
        m.expected_index for m in other.matching.pairs}
    expected, predicted = record_views(finder)
    _, other_predicted = record_views(other)
    by_id = {p.id: view for p, view in zip(finder.predicted, predicted, strict=True)}
    return [Find(case_id=finder.case_id, suite=suite, expected=expected[m.expected_index],
                 found_by=by_id[m.predicted_id], other_predicted=other_predicted)
            for m in sorted(finder.matching.pairs, key=lambda m: m.expected_index)
            if m.expected_index in missed_by_other]


def side_by_side(doxa: RunFile, baseline: RunFile) -> SideBySide:
    """doxa's run beside a baseline's, over the cases both answered."""
    if baseline.baseline is None:
        raise ConfigError("the baseline run was not written by `doxa eval run --baseline`")
    if doxa.baseline is not None:
        raise ConfigError(f"both runs are baselines ({doxa.baseline}, {baseline.baseline})")
    theirs = {c.case_id: c for c in baseline.cases}
    pairs = [(c, theirs[c.case_id]) for c in doxa.cases if c.case_id in theirs
             and c.error is None and theirs[c.case_id].error is None]
    kept = {c.case_id for c, _ in pairs}
    left_out = sorted({c.case_id for c in (*doxa.cases, *baseline.cases)} - kept)
    groups: dict[str, list[tuple[CaseResult, CaseResult]]] = {}
    for pair in pairs:
        groups.setdefault(suite_of(pair[0], doxa.suite), []).append(pair)
    suites = [_row(name, [d for d, _ in members], [b for _, b in members])
              for name, members in sorted(groups.items())]
    if len(suites) > 1:
        suites.append(_row(ALL, [d for d, _ in pairs], [b for _, b in pairs]))
    kinds = [_row(kind, [d for d, _ in pairs], [b for _, b in pairs], kind) for kind in KINDS]
    return SideBySide(
        baseline=baseline.baseline, suites=tuple(suites),
        kinds=tuple(k for k in kinds
                    if k.doxa.recall is not None or k.baseline.recall is not None),
        baseline_only=tuple(f for d, b in pairs for f in _finds(b, d, suite_of(d, doxa.suite))),
        doxa_only=tuple(f for d, b in pairs for f in _finds(d, b, suite_of(d, doxa.suite))),
        left_out=tuple(left_out),
    )


def doxa_and_baseline(a: RunFile, b: RunFile) -> tuple[RunFile, RunFile] | None:
    """(doxa's run, the baseline's) when exactly one of the two is a baseline, in any order."""
    if (a.baseline is None) == (b.baseline is None):
        return None
    return (a, b) if b.baseline is not None else (b, a)


MARKDOWN_HEADER = ("suite", "cases", "doxa recall", "{b} recall", "doxa evidence precision",
                   "{b} evidence precision", "doxa input tokens/case", "{b} input tokens/case")


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def markdown_table(view: SideBySide) -> str:
    """The per-suite rows as a markdown table, for the README."""
    header = [h.format(b=view.baseline) for h in MARKDOWN_HEADER]
    lines = ["| " + " | ".join(header) + " |",
             "| --- |" + " ---: |" * (len(header) - 1)]
    for row in view.suites:
        cells = [row.group, str(row.cases), _cell(row.doxa.recall, 3),
                 _cell(row.baseline.recall, 3), _cell(row.doxa.evidence_precision, 3),
                 _cell(row.baseline.evidence_precision, 3),
                 _cell(row.doxa.input_tokens_per_case, 0),
                 _cell(row.baseline.input_tokens_per_case, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
