"""`doxa eval report`: one self-contained HTML page for a run (no scripts, no CDN).

Summary, per-case table, predicted vs expected with evidence for each case, and the
reliability plot as inline SVG. The page is rendered by jinja2 with autoescaping: every
statement in it came from a user's events or an LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from doxa.calibration.reliability import RiskPoint, calibration, risk_coverage
from doxa.eval.metrics import (
    Calibration,
    calibration_points,
    evidence_points,
    metric_values,
    usage_values,
)
from doxa.eval.runfile import CaseResult, RunFile
from doxa.eval.sidebyside import SideBySide
from doxa.eval.views import record_views

SIZE = 320
PAD = 40


def _xy(x: float, y: float) -> tuple[float, float]:
    span = SIZE - 2 * PAD
    return PAD + x * span, SIZE - PAD - y * span


def _frame(label: str, css: str, x_name: str, y_name: str, *, diagonal: bool) -> list[str]:
    """An empty square plot: box, optional diagonal, ticks at quarters, axis names."""
    lo, hi = _xy(0, 0), _xy(1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" '
        f'viewBox="0 0 {SIZE} {SIZE}" role="img" aria-label="{label}" class="{css}">',
        f'<rect x="{lo[0]}" y="{hi[1]}" width="{hi[0] - lo[0]}" height="{lo[1] - hi[1]}" '
        'fill="#fafafa" stroke="#999"/>',
    ]
    if diagonal:
        parts.append(f'<line x1="{lo[0]}" y1="{lo[1]}" x2="{hi[0]}" y2="{hi[1]}" '
                     'stroke="#bbb" stroke-dasharray="4 4"/>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, _ = _xy(tick, 0)
        _, y = _xy(0, tick)
        parts.append(f'<text x="{x:.1f}" y="{lo[1] + 16}" font-size="10" '
                     f'text-anchor="middle">{tick:g}</text>')
        parts.append(f'<text x="{lo[0] - 6}" y="{y + 3:.1f}" font-size="10" '
                     f'text-anchor="end">{tick:g}</text>')
    parts.append(f'<text x="{SIZE / 2}" y="{SIZE - 6}" font-size="11" '
                 f'text-anchor="middle">{x_name}</text>')
    parts.append(f'<text x="12" y="{SIZE / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {SIZE / 2})">{y_name}</text>')
    return parts


AFTER, BEFORE = "#3b6ea8", "#b0b0b0"


def reliability_svg(cal: Calibration, before: Calibration | None = None) -> str:
    """Accuracy against mean confidence per bin (dot area ∝ count), with the diagonal;
    `before` (the evidence scores, when a profile read the records) in grey beneath."""
    parts = _frame("reliability plot", "reliability", "confidence", "fraction matched",
                   diagonal=True)
    series = [(before, BEFORE, "evidence score "), (cal, AFTER, "")] if before else [
        (cal, AFTER, "")]
    biggest = max((b.count for c, _, _ in series if c for b in c.bins), default=0) or 1
    for table, colour, what in series:
        assert table is not None
        for b in table.bins:
            if b.count and b.mean_confidence is not None and b.accuracy is not None:
                x, y = _xy(b.mean_confidence, b.accuracy)
                r = 3 + 9 * (b.count / biggest) ** 0.5
                parts.append(f'<circle class="bin" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" '
                             f'fill="{colour}" fill-opacity="0.7"><title>{what}'
                             f'{b.lo:.1f}–{b.hi:.1f}: {b.count} records, {b.accuracy:.0%} '
                             'matched</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def risk_coverage_svg(after: Sequence[RiskPoint], before: Sequence[RiskPoint] = ()) -> str:
    """Precision of the records kept against the share kept, one point per threshold:
    read right to left, a rising line means a higher threshold keeps surer records."""
    parts = _frame("risk-coverage curve", "risk-coverage", "share of records kept",
                   "precision of those kept", diagonal=False)
    for rows, colour, what in ((before, BEFORE, "evidence score "), (after, AFTER, "")):
        if not rows:
            continue
        points = [(_xy(r.coverage, r.precision), r) for r in rows]
        path = " ".join(f"{x:.1f},{y:.1f}" for (x, y), _ in points)
        parts.append(f'<polyline class="risk" points="{path}" fill="none" stroke="{colour}" '
                     'stroke-width="2"/>')
        for (x, y), r in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>'
                         f'{what}≥ {r.threshold:.3f}: {r.kept} kept, '
                         f'{r.precision:.0%} right</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _case_view(result: CaseResult) -> dict[str, Any]:
    expected, predicted = record_views(result)
    by_index = {m.expected_index: m for m in result.matching.pairs}
    by_id = {p.id: p for p in result.predicted}
    partner = {n: (by_id[m.predicted_id].statement, m.score) for n, m in by_index.items()}
    return {"r": result, "expected": expected, "predicted": predicted, "partner": partner,
            "forbidden_hits": [(result.forbidden[h.forbidden_index].statement,
                                by_id[h.predicted_id].statement, h.score)
                               for h in result.matching.forbidden_hits],
            "mismatches": [(result.expected[k.expected_index].statement, k.expected_kind,
                            by_id[k.predicted_id].statement, k.predicted_kind, k.score)
                           for k in result.matching.kind_mismatches]}


def render_html(run: RunFile, *, title: str | None = None,
                beside: SideBySide | None = None) -> str:
    """The report page for a run, as one HTML string; `beside` sets it next to a baseline."""
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    m = run.metrics
    # From the cases, so a run file written before these figures existed has them too.
    scored = [c.scored() for c in run.cases if c.error is None]
    after_points = [p for c in scored for p in calibration_points(c)]
    before_points = [p for c in scored for p in evidence_points(c)]
    before = calibration(before_points) if before_points != after_points else None
    risk, risk_before = risk_coverage(after_points), risk_coverage(before_points)
    template = env.from_string(
        files("doxa.eval").joinpath("report.html.j2").read_text(encoding="utf-8"))
    return template.render(
        run=run, title=title or f"doxa eval: {run.suite}", values=metric_values(run.metrics),
        ratios=usage_values(run.usage, run.metrics),
        # numbers only, no event text
        plot=Markup(reliability_svg(m.calibration, before)),
        risk_plot=Markup(risk_coverage_svg(risk, risk_before if before else ())),
        before=before, risk=risk,
        cases=[_case_view(c) for c in run.cases], beside=beside,
    )


def write_report(run: RunFile, path: str | Path, *, beside: SideBySide | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(run, beside=beside), encoding="utf-8")
    return p
