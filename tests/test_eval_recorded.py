"""`doxa eval run` end to end against a recorded real model, then `doxa eval compare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import recorded_session
from doxa.cli.eval import EXIT_OK, app
from doxa.eval.runfile import read_run

pytestmark = pytest.mark.recorded
SUITE = Path(__file__).parent / "data" / "eval_suite"


def test_eval_run_on_a_small_suite_replays_and_compares(tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    with recorded_session("eval_small_suite") as meta:
        args = ["run", str(SUITE), "--model", meta.model, "--no-cache", "--concurrency", "1",
                "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--json"]
        if meta.base_url:
            args += ["--base-url", meta.base_url]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.stdout)
    assert data["errored"] == []
    run = read_run(out)
    assert run.model == meta.model and len(run.cases) == 2
    assert run.usage.llm_calls >= 2 and run.usage.input_tokens > 0
    assert 0.0 <= run.metrics.overall.f1 <= 1.0
    injected = next(c for c in run.cases if c.case_id == "test-injection-fake-system")
    assert not any("VIP" in p.statement or "discount" in p.statement for p in injected.predicted)

    oracle = tmp_path / "oracle.json"
    assert CliRunner().invoke(app, ["run", str(SUITE), "--oracle", "--out", str(oracle)]
                              ).exit_code == EXIT_OK
    compared = CliRunner().invoke(app, ["compare", str(out), str(oracle)])
    assert compared.exit_code == 0, compared.output
    assert "f1" in compared.output and "test-security-review" in compared.output
