"""`doxa eval compare` and `doxa eval report` on two stored runs (tests/data/eval_run_*.json).

Run A and run B score the same three cases: cfo-business-case got worse in B (a forbidden
"discount" belief instead of the business-case goal), monthly-billing got better (a
preference instead of a belief), dark-mode stayed the same.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from doxa.cli import eval as cli
from doxa.cli.eval import app
from doxa.eval.compare import compare_runs
from doxa.eval.report import render_html
from doxa.eval.runfile import read_run

DATA = Path(__file__).parent / "data"
RUN_A = DATA / "eval_run_a.json"
RUN_B = DATA / "eval_run_b.json"
runner = CliRunner()


def test_stored_runs_still_read() -> None:
    a, b = read_run(RUN_A), read_run(RUN_B)
    assert [c.case_id for c in a.cases] == ["cfo-business-case", "monthly-billing", "dark-mode"]
    assert (a.prompt_version, b.prompt_version) == ("extract@aaaa1111", "extract@bbbb2222")
    assert a.metrics.overall.f1 == pytest.approx(2 / 3)
    assert b.metrics.overall.f1 == pytest.approx(4 / 7)


def test_compare_lists_deltas_then_worse_and_better_cases(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=240))  # one record a line
    result = runner.invoke(app, ["compare", str(RUN_A), str(RUN_B)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "metrics (B − A)" in out
    f1_row = next(line for line in out.splitlines() if re.match(r"\W*f1\W", line))
    assert "0.667" in f1_row and "0.571" in f1_row and "-0.095" in f1_row
    worse, better = out.index("1 case(s) got worse"), out.index("1 case(s) got better")
    assert worse < out.index("cfo-business-case: F1 1.00 → 0.00, forbidden 0 → 1") < better
    assert better < out.index("monthly-billing: F1 0.00 → 1.00")
    assert "Wants a discount on the price" in out  # B's prediction, beside A's and the label
    assert "Build a business case to get CFO approval" in out
    assert "Get CFO approval by building a business case" in out
    assert "dark-mode" not in out


def test_compare_json() -> None:
    result = runner.invoke(app, ["compare", str(RUN_A), str(RUN_B), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    deltas = {d["name"]: d for d in data["metrics"]}
    assert deltas["f1"]["delta"] == pytest.approx(4 / 7 - 2 / 3)
    assert deltas["f1"]["better"] is False
    assert deltas["forbidden_violations"]["delta"] == 1.0
    assert deltas["forbidden_violations"]["better"] is False
    assert deltas["preference.recall"]["better"] is True
    assert deltas["llm_calls"]["better"] is None  # usage has no direction
    assert [c["case_id"] for c in data["worse"]] == ["cfo-business-case"]
    assert [c["case_id"] for c in data["better"]] == ["monthly-billing"]
    worse = data["worse"][0]
    assert sorted(v["statement"] for v in worse["predicted_b"] if not v["matched"]) == [
        "Compare pricing plans", "Wants a discount on the price"]
    assert data["a"]["prompt_version"] == "extract@aaaa1111"


def test_comparing_a_run_with_itself_shows_no_change() -> None:
    a = read_run(RUN_A)
    same = compare_runs(a, a)
    assert same.worse == () and same.better == ()
    assert all(d.delta in (0.0, None) for d in same.metrics)


def test_compare_refuses_a_missing_run_with_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compare", str(RUN_A), str(tmp_path / "nope.json")])
    assert result.exit_code == 1
    assert "nope.json: file does not exist" in result.output


def test_report_escapes_what_events_and_llms_wrote() -> None:
    run = read_run(RUN_A)
    case = run.cases[0]
    hostile = case.predicted[0].model_copy(update={"statement": "<script>alert(1)</script>"})
    html = render_html(run.model_copy(update={
        "cases": (case.model_copy(update={"predicted": (hostile,)}), *run.cases[1:])}))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<link" not in html and "src=" not in html  # self-contained: nothing fetched


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def dump_dom(html: Path, profile: Path) -> str:
    """The page as headless Chromium rendered it (its DOM after parsing, as HTML)."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(RUN_B), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert page.exists()
    dom = dump_dom(page, tmp_path / "profile")
    assert re.search(r'<table id="summary">.*data-metric="f1".*0\.571', dom, re.S)
    rows = re.findall(r'<tr class="case-row" data-case="([^"]+)"', dom)
    assert rows == ["cfo-business-case", "monthly-billing", "dark-mode"]
    assert dom.count('class="case-detail"') == 3
    assert "Wants a discount on the price" in dom and "forbidden" in dom
    assert re.search(r'<svg[^>]*class="reliability"', dom) and 'class="bin"' in dom


def test_report_refuses_what_is_not_a_run_file(tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text("[]")
    result = runner.invoke(app, ["report", str(bogus), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and "not a doxa eval run" in result.output


def test_compare_refuses_runs_over_different_cases_unless_allowed(tmp_path: Path) -> None:
    """Metrics over different case sets do not compare: the command says so and how many
    cases each run holds, and runs only when told to."""
    run = json.loads(RUN_B.read_text())
    run["cases"] = run["cases"][1:]
    fewer = tmp_path / "fewer.json"
    fewer.write_text(json.dumps(run))
    total = len(json.loads(RUN_A.read_text())["cases"])
    refused = runner.invoke(app, ["compare", str(RUN_A), str(fewer)])
    assert refused.exit_code == 1
    assert f"cases: A {total}, B {total - 1}, {total - 1} in both" in refused.output
    assert "--allow-different-suites" in refused.output
    allowed = runner.invoke(app, ["compare", str(RUN_A), str(fewer), "--allow-different-suites"])
    assert allowed.exit_code == 0, allowed.output
    lines = allowed.output.splitlines()
    assert lines[2] == f"cases: A {total}, B {total - 1}, {total - 1} in both"
    assert "only in A:" in allowed.output


def test_compare_prints_the_case_counts_before_the_metrics() -> None:
    result = runner.invoke(app, ["compare", str(RUN_A), str(RUN_B)])
    total = len(json.loads(RUN_A.read_text())["cases"])
    counts = result.output.index(f"cases: A {total}, B {total}, {total} in both")
    assert counts < result.output.index("metrics (B − A)")
