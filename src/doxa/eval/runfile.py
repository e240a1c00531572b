"""The run file: one eval run as durable JSON, which `compare` and `report` read.

It holds what was run (suite, model, prompt version, matcher), every case's predicted and
expected records with the matching and scores, and the totals: enough to rescore or diff
without running anything again.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from doxa.errors import InvalidRunFileError
from doxa.eval.fixtures import ExpectedLink, ExpectedRecord, ForbiddenRecord, read_json
from doxa.eval.match import Matching, PredictedRecord
from doxa.eval.metrics import CaseMetrics, ScoredCase, SuiteMetrics
from doxa.usage import Usage

FORMAT: Final = "doxa-eval-run"
FORMAT_VERSION = 1


class CaseResult(BaseModel):
    """One case as run: the final model's records, the labels, the matching, scores, cost."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    description: str = ""
    path: str = ""
    user_id: str = ""
    batches: int = 1
    prompt_version: str = ""
    predicted: tuple[PredictedRecord, ...] = ()
    expected: tuple[ExpectedRecord, ...] = ()
    forbidden: tuple[ForbiddenRecord, ...] = ()
    links: tuple[ExpectedLink, ...] | None = None
    """The case's labelled causal links (None: it labels none)."""
    matching: Matching = Matching()
    metrics: CaseMetrics | None = None
    usage: Usage = Usage()
    error: str | None = None
    baseline: str | None = None
    """The built-in baseline that answered this case (None: doxa did)."""
    warning: str | None = None
    """Something a reader of the scores should know: a baseline's answer that did not parse."""

    def scored(self) -> ScoredCase:
        return ScoredCase(self.predicted, self.expected, self.forbidden, self.matching,
                          multi_batch=self.batches > 1, calibrated=self.baseline is None,
                          links=self.links)


class RunFile(BaseModel):
    """A whole eval run: settings, per-case results, suite metrics and total usage."""

    model_config = ConfigDict(frozen=True)

    format: Literal["doxa-eval-run"] = "doxa-eval-run"
    format_version: int = FORMAT_VERSION
    doxa_version: str
    suite: str
    model: str
    prompt_version: str = ""
    why_prompt_version: str | None = None
    """The why pass's prompt version when the run asked for it (`--why`); None: no why pass,
    so real extraction proposed no links."""
    matcher: str
    oracle: bool = False
    baseline: str | None = None
    """Set when a built-in baseline (`naive`), not doxa, answered the cases."""
    started_at: AwareDatetime
    finished_at: AwareDatetime
    cases: tuple[CaseResult, ...] = ()
    metrics: SuiteMetrics = SuiteMetrics()
    usage: Usage = Usage()
    judge_usage: dict[str, int] = {}

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def case(self, case_id: str) -> CaseResult | None:
        return next((c for c in self.cases if c.case_id == case_id), None)


def write_run(run: RunFile, path: str | Path) -> Path:
    """Write the run as indented JSON, creating the folder; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(run.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return p


def read_run(path: str | Path) -> RunFile:
    """Read a run file; `InvalidRunFileError` says what is wrong with it."""
    p = Path(path)
    data = read_json(p, InvalidRunFileError)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidRunFileError(p, f"not a doxa eval run (no \"format\": \"{FORMAT}\")")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise InvalidRunFileError(p, f"written by a newer doxa (format version "
                                     f"{data['format_version']}); upgrade doxa to read it")
    try:
        return RunFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise InvalidRunFileError(p, f"{where}: {err['msg']}") from None


def stamp() -> datetime:
    """Now, time-zone aware: run files are read on other machines."""
    from datetime import UTC

    return datetime.now(UTC)
