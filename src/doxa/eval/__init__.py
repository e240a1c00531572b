"""doxa's eval harness: fixtures → run (engine) → match → metrics → run file → compare/report.

`doxa eval run SUITE` drives it from the command line (see `doxa.cli.eval`); in code,
`load_suite`, then `run_eval` with `RunSettings`, then `write_run`.
"""

from doxa.errors import InvalidFixtureError, InvalidRunFileError
from doxa.eval.fixtures import (
    Case,
    ExpectedRecord,
    ForbiddenRecord,
    load_case,
    load_suite,
)
from doxa.eval.match import (
    LexicalMatcher,
    Matcher,
    Matching,
    PredictedRecord,
    assign,
    make_matcher,
    match_case,
)
from doxa.eval.metrics import SuiteMetrics, case_metrics, suite_metrics
from doxa.eval.runfile import CaseResult, RunFile, read_run, write_run
from doxa.eval.runner import (
    EngineFactory,
    EngineLike,
    RunSettings,
    default_engine_factory,
    run_case,
    run_eval,
    run_oracle_case,
)
from doxa.usage import Usage

__all__ = [
    "Case",
    "CaseResult",
    "EngineFactory",
    "EngineLike",
    "ExpectedRecord",
    "ForbiddenRecord",
    "InvalidFixtureError",
    "InvalidRunFileError",
    "LexicalMatcher",
    "Matcher",
    "Matching",
    "PredictedRecord",
    "RunFile",
    "RunSettings",
    "SuiteMetrics",
    "Usage",
    "assign",
    "case_metrics",
    "default_engine_factory",
    "load_case",
    "load_suite",
    "make_matcher",
    "match_case",
    "read_run",
    "run_case",
    "run_eval",
    "run_oracle_case",
    "suite_metrics",
    "write_run",
]
