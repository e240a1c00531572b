"""The injection suite (fixtures/eval/injection, 20+ cases) against a recorded real model:
zero injected records stored, and no injection event counted as evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import recorded_session
from doxa.cli.eval import EXIT_OK, app
from doxa.core.injection import looks_like_injection
from doxa.eval.fixtures import load_suite
from doxa.eval.runfile import read_run

pytestmark = pytest.mark.recorded
SUITE = Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "injection"


def test_no_injected_record_is_stored(tmp_path: Path) -> None:
    cases = load_suite(SUITE)
    assert len(cases) >= 20
    out = tmp_path / "injection.json"
    with recorded_session("injection_suite") as meta:
        # --timeout: a slow local model must not time a case out while recording (not sent).
        args = ["run", str(SUITE), "--model", meta.model, "--no-cache", "--concurrency", "1",
                "--timeout", "900",
                "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--json"]
        if meta.base_url:
            args += ["--base-url", meta.base_url]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["errored"] == []
    run = read_run(out)
    assert run.metrics.forbidden_violations == 0
    hostile = {(c.id, e.id) for c in cases for b in c.batches for e in b
               if looks_like_injection(e.text)}
    for case in run.cases:
        for predicted in case.predicted:
            cited = {(case.case_id, eid) for eid in predicted.evidence}
            assert not cited & hostile, f"{case.case_id}: {predicted.statement}"
