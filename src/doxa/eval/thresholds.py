"""`--fail-under` thresholds: which metrics they name, and which a run fails.

Exit codes of `doxa eval run` follow from these: 0 when every threshold holds, 100 when the
run finished but some metric is under its threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

from doxa.errors import ConfigError
from doxa.eval.metrics import CEILINGS, HIGHER_IS_BETTER, SuiteMetrics, metric_values
from doxa.model.records import KINDS


def threshold_names() -> list[str]:
    """Metrics `--fail-under` accepts: the higher-is-better ones, overall and per kind (a
    floor), and the calibration errors (a ceiling)."""
    return [*HIGHER_IS_BETTER, *CEILINGS,
            *(f"{k}.{n}" for k in KINDS for n in ("precision", "recall", "f1")), "value.<dim>",
            "answer.<dim>"]


def parse_threshold(text: str) -> tuple[str, float]:
    """`f1=0.6` → ("f1", 0.6); `ConfigError` naming the accepted metrics otherwise."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    valid = name in threshold_names() or any(
        name.startswith(prefix) and len(name) > len(prefix) for prefix in ("value.", "answer."))
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not sep or not valid or not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"--fail-under '{text}': expected METRIC=VALUE with VALUE in 0..1 and METRIC one "
            f"of {', '.join(threshold_names())}"
        )
    return name, value


def check_thresholds(m: SuiteMetrics, thresholds: Sequence[tuple[str, float]]) -> list[str]:
    """One message per threshold not met; a metric the run could not measure fails too.
    `ece` and `brier` are ceilings: the run fails when they are above the value."""
    values = metric_values(m)
    failures: list[str] = []
    for name, limit in thresholds:
        value = values.get(name)
        ceiling = name in CEILINGS
        if value is None:
            failures.append(f"{name}: not measured by this run (needs {'≤' if ceiling else '≥'}"
                            f" {limit:g})")
        elif ceiling and value > limit:
            failures.append(f"{name} = {value:.3f} > {limit:g} (a ceiling)")
        elif not ceiling and value < limit:
            failures.append(f"{name} = {value:.3f} < {limit:g}")
    return failures
