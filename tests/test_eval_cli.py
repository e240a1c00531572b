"""`doxa eval run`: the run file, the summary, and the exit codes (0, 100, 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from doxa.cli.eval import EXIT_ERROR, EXIT_OK, EXIT_UNDER_THRESHOLD, app
from doxa.eval import runner as eval_runner
from doxa.eval.runfile import read_run

runner = CliRunner()

CASE = {
    "id": "cfo", "user_id": "u-cfo",
    "batches": [[
        {"id": "e1", "type": "page_view", "timestamp": "2026-03-02T10:00:00Z",
         "properties": {"path": "/pricing"}},
        {"id": "e4", "type": "chat_message", "timestamp": "2026-03-02T10:31:00Z",
         "text": "I need to show my CFO this pays back within 6 months"},
    ]],
    "expected": [{"kind": "goal", "statement": "Get CFO approval by building a business case",
                  "evidence": ["e4"], "dimension": "stage", "value": "evaluation"}],
}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    (folder / "saas").mkdir(parents=True)
    (folder / "saas" / "cfo.json").write_text(json.dumps(CASE))
    return folder


def run(*args: str) -> Any:
    return runner.invoke(app, ["run", *args])


def test_an_oracle_run_writes_a_run_file_and_passes(suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "oracle.json"
    result = run(str(suite), "--oracle", "--out", str(out), "--fail-under", "f1=0.9")
    assert result.exit_code == EXIT_OK, result.output
    assert "evidence_f1" in result.output and f"run file: {out}" in result.output
    saved = read_run(out)
    assert (saved.oracle, saved.model, saved.matcher) == (True, "oracle", "lexical")
    assert saved.metrics.overall.f1 == 1.0 and saved.cases[0].case_id == "cfo"


def test_under_a_threshold_the_run_exits_100(suite: Path, tmp_path: Path) -> None:
    # The oracle passes labels through, so it meets f1 and value.stage; no case labels a
    # `budget` dimension, and a metric the run could not measure fails its threshold.
    result = run(str(suite), "--oracle", "--out", str(tmp_path / "r.json"), "--json",
                 "--fail-under", "f1=0.5,value.stage=0.5,value.budget=0.5")
    assert result.exit_code == EXIT_UNDER_THRESHOLD, result.output
    data = json.loads(result.stdout)
    assert data["threshold_failures"] == [
        "value.budget: not measured by this run (needs ≥ 0.5)"]
    assert data["metrics"]["overall"]["f1"] == 1.0 and data["errored"] == []
    assert (tmp_path / "r.json").exists()  # written even when under threshold


@pytest.mark.parametrize(("args", "message"), [
    (["--fail-under", "f1"], "expected METRIC=VALUE"),
    (["--fail-under", "evidence_ece=0.1"], "expected METRIC=VALUE"),
    (["--matcher", "fuzzy"], "unknown matcher 'fuzzy'"),
])
def test_bad_options_exit_1(suite: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run(str(suite), "--oracle", "--out", str(tmp_path / "r.json"), *args)
    assert result.exit_code == EXIT_ERROR
    assert message in result.output


def test_a_bad_fixture_exits_1_naming_the_file_and_key(suite: Path) -> None:
    broken = {**CASE, "expected": [{"kind": "goal", "statement": "x", "evidence": ["e9"]}]}
    (suite / "broken.json").write_text(json.dumps(broken))
    result = run(str(suite), "--oracle")
    assert result.exit_code == EXIT_ERROR
    assert "broken.json, key 'expected[0].evidence'" in result.output


def test_a_case_that_errors_exits_1_after_writing_the_run(
        suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        async def ingest(self, user_id: str, events: Any) -> Any:
            raise RuntimeError("connection reset")

        async def model(self, user_id: str) -> Any:
            raise AssertionError("not reached")

        async def close(self) -> None:
            pass

    seen: dict[str, Any] = {}

    def factory(model: str, **kwargs: Any) -> Any:
        seen.update(model=model, **kwargs)
        return lambda case_id: Broken()

    monkeypatch.setattr(eval_runner, "default_engine_factory", factory)
    out = tmp_path / "r.json"
    result = run(str(suite), "--model", "anthropic/claude-haiku-4-5", "--out", str(out),
                 "--no-cache", "--prompt", "prompts/extract", "--cache-dir", str(tmp_path))
    assert result.exit_code == EXIT_ERROR
    assert "case cfo errored" in result.output and "connection reset" in result.output
    assert seen == {"model": "anthropic/claude-haiku-4-5", "base_url": None,
                    "prompt_dir": "prompts/extract", "cache": False,
                    "cache_path": tmp_path / "eval.db", "timeout_s": None,
                    "schema": None, "calibration": None, "why": False}
    assert read_run(out).metrics.errored == 1


def test_eval_run_timeout_reaches_the_engine_and_the_run_file() -> None:
    from doxa.eval.runner import RunSettings, default_engine_factory

    engine = default_engine_factory("openai/local", base_url="http://127.0.0.1:9/v1",
                                    cache=False, timeout_s=600.0)("case")
    assert engine._settings.timeout_s == 600.0  # type: ignore[attr-defined]
    assert RunSettings(suite="s", timeout_s=600.0).timeout_s == 600.0


def test_cases_and_every_choose_a_fixed_sample(suite: Path, tmp_path: Path) -> None:
    for n in range(2, 6):
        (suite / "saas" / f"cfo{n}.json").write_text(json.dumps({**CASE, "id": f"cfo-{n}"}))
    out = tmp_path / "r.json"
    result = run(str(suite), "--oracle", "--out", str(out), "--cases", "cfo-*", "--every", "2")
    assert result.exit_code == EXIT_OK, result.output
    assert [c.case_id for c in read_run(out).cases] == ["cfo-2", "cfo-4"]
    none = run(str(suite), "--oracle", "--out", str(out), "--cases", "nope*")
    assert none.exit_code == EXIT_ERROR and "--cases: no case id" in none.output
