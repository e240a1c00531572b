"""`doxa eval calibrate` (from runs and from outcomes) and `doxa calibration USER|--all`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from builders import NOW
from doxa import Engine
from doxa.calibration.profile import read_profile
from doxa.cli.main import app
from doxa.eval.fixtures import parse_case
from doxa.eval.match import LexicalMatcher
from doxa.eval.runner import score_case
from test_calibration import BASELINE, commit_stored, stored_model

runner = CliRunner()
pytest.importorskip("sklearn")


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_calibrate_fits_the_committed_run_and_writes_the_profile(tmp_path: Path) -> None:
    out = tmp_path / "calibration" / "mine.json"
    result = invoke("eval", "calibrate", str(BASELINE), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["profile"] == "mine" and figures["folds"] == 5
    assert figures["ece_after"] <= 0.10 < figures["ece_before"]
    assert figures["brier_after"] < figures["brier_before"]
    written = read_profile(out)
    assert written.model == "openai/qwen2.5-coder-1.5b-instruct"
    assert written.prompt_version == "extract@794fc5fbad"
    assert written.figures is not None and written.figures.after.ece == figures["ece_after"]


def test_calibrate_prints_the_figures_and_the_risk_coverage(tmp_path: Path) -> None:
    result = invoke("eval", "calibrate", str(BASELINE), "--out", str(tmp_path / "m.json"),
                    "--method", "logistic")
    assert result.exit_code == 0, result.output
    assert "5-fold cross-validated by case" in result.output
    assert "risk–coverage" in result.output and "ECE" in result.output


@pytest.mark.parametrize(("args", "message"), [
    ((), "at least one run file"),
    (("--from-outcomes", "x.db", str(BASELINE)), "not both"),
    ((str(BASELINE), "--method", "spline"), "--method 'spline'"),
])
def test_calibrate_refuses_bad_input_clearly(tmp_path: Path, args: tuple[str, ...],
                                             message: str) -> None:
    result = invoke("eval", "calibrate", *args, "--out", str(tmp_path / "p.json"))
    assert result.exit_code == 1 and message in result.output


async def _outcomes(db: Path, users: list[str]) -> None:
    for n, user_id in enumerate(users):
        async with Engine(model="openai/gpt-4o-mini", store=f"sqlite:///{db}") as engine:
            model = await commit_stored(engine.store, user_id)
            for m, rec in enumerate(model.records):
                outcome = "engaged" if (n + m) % 2 else "dismissed"
                await engine.record_outcome(user_id, rec.id, outcome, event_id=f"d{m}", at=NOW)


@pytest.fixture
def outcomes_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOXA_CALIBRATION_DIR", str(tmp_path))  # no profile for this model
    db = tmp_path / "doxa.db"
    asyncio.run(_outcomes(db, ["u1", "u2", "u3"]))
    return db


def test_calibration_shows_the_live_table_for_everyone_and_for_one_user(
        outcomes_db: Path) -> None:
    result = invoke("calibration", "--all", "--db", str(outcomes_db), "--json")
    assert result.exit_code == 0, result.output
    [table] = json.loads(result.output)
    assert table["profile"] == "uncalibrated" and table["outcomes"]["n"] == 6
    assert table["kinds"] == {"goal": 3, "preference": 3} and table["drift"] is False
    one = invoke("calibration", "u1", "--db", str(outcomes_db), "--json")
    assert json.loads(one.output)[0]["outcomes"]["n"] == 2
    text = invoke("calibration", "u2", "--db", str(outcomes_db))
    assert "profile uncalibrated" in text.output and "too few to judge drift" in text.output


def test_calibration_flags_drift(outcomes_db: Path) -> None:
    result = invoke("calibration", "--all", "--db", str(outcomes_db), "--min-outcomes", "5",
                    "--max-ece", "0.01")
    assert result.exit_code == 0 and "DRIFT" in result.output
    assert "--from-outcomes" in result.output


def test_calibration_needs_a_user_or_all(outcomes_db: Path) -> None:
    result = invoke("calibration", "--db", str(outcomes_db))
    assert result.exit_code == 1 and "--all" in result.output


def test_calibrate_from_outcomes_refits_with_figures_by_user(outcomes_db: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    result = invoke("eval", "calibrate", "--from-outcomes", str(outcomes_db), "--out", str(out),
                    "--folds", "3", "--json")
    assert result.exit_code == 0, result.output
    profile = read_profile(out)
    assert profile.method == "identity+outcomes" and profile.fitted_on.source == "outcomes"
    assert profile.model == "openai/gpt-4o-mini" and profile.prompt_version == "p@1"
    assert (profile.fitted_on.cases, profile.fitted_on.records) == (3, 6)
    assert profile.figures is not None and profile.figures.folds == 3
    assert len(profile.curves) == 1


async def test_a_run_file_carries_each_records_features() -> None:
    model = stored_model("u-cfo")
    case = parse_case({"id": "c", "user_id": "u-cfo", "batches": [[
        {"id": "e1", "type": "chat_message", "timestamp": "2026-03-02T10:00:00Z",
         "text": "We need SOC 2 Type II before we sign"}]],
        "expected": [{"kind": "goal", "statement": "Needs a SOC 2 report"}]})
    result = await score_case(case, model.records, matcher=LexicalMatcher(),
                              events=model.events)
    assert all(p.features is not None for p in result.predicted)
    goal = next(p for p in result.predicted if p.kind == "goal")
    assert goal.features is not None and goal.features.evidence_score == goal.confidence
    assert goal.features.explicit_share == 1.0 and goal.features.relevance is not None
