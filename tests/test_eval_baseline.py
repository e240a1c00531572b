"""`doxa eval run --baseline naive` against the fake provider, and doxa set beside it.

The naive baseline makes one call per case with every event of every batch, is scored by
the same matcher, writes a run file marked as a baseline, and that file loads in compare
(baseline-only finds listed first) and in report.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from builders import write_suite
from doxa.cli import eval as cli
from doxa.cli.eval import EXIT_ERROR, EXIT_OK, app
from doxa.eval.compare import compare_runs
from doxa.eval.fixtures import load_suite
from doxa.eval.naive import NAIVE_CONFIDENCE, event_line
from doxa.eval.runfile import read_run
from doxa.eval.runner import RunSettings, run_eval
from doxa.eval.sidebyside import markdown_table, side_by_side
from doxa.events.parse import parse_event
from doxa.testing.fake_provider import FakeProvider, serving_in_thread

runner = CliRunner()
BASELINES = Path(__file__).parents[1] / "evals" / "baselines"

DARK = "I prefer dark mode in every app I use"
CFO = "I need to show my CFO this pays back within 6 months"
SEATS = "We plan to add forty seats after the pilot ends"


def event(eid: str, minute: int, text: str | None = None, **props: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": eid, "type": "chat_message" if text else "page_view",
                            "timestamp": f"2026-03-02T10:{minute:02d}:00Z"}
    if text:
        data["text"] = text
    if props:
        data["properties"] = props
    return data


# The fake answers "Said: <first eight words>" for every event with 4+ words of text, so
# these labels are matched whenever the event reaches the model.
CASES = {
    "saas/cfo.json": {
        "id": "cfo", "user_id": "u-cfo",
        "batches": [[event("e1", 0, path="/pricing"), event("e2", 5, CFO)],
                    [event("e3", 9, SEATS)]],
        "expected": [
            {"kind": "goal", "statement": "Said: I need to show my CFO this pays",
             "evidence": ["e2"]},
            {"kind": "goal", "statement": "Said: We plan to add forty seats after the",
             "evidence": ["e3"]},
        ],
    },
    "everyday/dark.json": {
        "id": "dark", "user_id": "u-dark",
        "batches": [[event("d1", 1, DARK), event("d2", 2, path="/settings")]],
        "expected": [{"kind": "preference", "statement": "Said: I prefer dark mode in every app I",
                      "evidence": ["d1"]}],
    },
}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "suite", CASES)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with serving_in_thread(FakeProvider(keep_bodies=True)) as provider:
        yield provider


def naive_args(suite: Path, fake: FakeProvider, out: Path, *extra: str) -> list[str]:
    return ["run", str(suite), "--baseline", "naive", "--model", "openai/fake", "--base-url",
            fake.base_url, "--out", str(out), "--no-cache", *extra]


def test_the_naive_run_makes_one_call_per_case_with_every_event(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    out = tmp_path / "naive.json"
    result = runner.invoke(app, naive_args(suite, fake, out, "--json"))
    assert result.exit_code == EXIT_OK, result.output
    assert fake.stats.requests == 2  # two cases, one of them in two batches
    bodies = {json.dumps(b): b for b in fake.stats.bodies}
    sent = "\n".join(m["content"] for b in bodies.values() for m in b["messages"])
    for eid in ("e1", "e2", "e3", "d1", "d2"):
        assert re.search(rf"^{eid} \| ", sent, re.M), eid
    for body in fake.stats.bodies:
        # One user message, one tool, no system prompt: nothing of doxa's prompt.
        assert [m["role"] for m in body["messages"]] == ["user"]
        assert [t["function"]["name"] for t in body["tools"]] == ["NaiveAnswer"]
    run = read_run(out)
    assert run.baseline == "naive" and run.prompt_version.startswith("naive@")
    assert json.loads(result.stdout)["baseline"] == "naive"
    assert run.usage.llm_calls == 2 and run.usage.cache_hits == 0
    assert run.usage.input_tokens == fake.stats.input_tokens > 0
    assert run.usage.output_tokens == fake.stats.output_tokens > 0
    assert run.metrics.overall.recall == 1.0 and run.metrics.evidence.precision == 1.0
    assert run.metrics.calibration.brier is None and run.metrics.calibration.ece is None
    assert all(p.confidence == NAIVE_CONFIDENCE for c in run.cases for p in c.predicted)
    assert {c.case_id: c.baseline for c in run.cases} == {"cfo": "naive", "dark": "naive"}


def test_a_cached_naive_answer_is_not_asked_again(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    args = [a for a in naive_args(suite, fake, tmp_path / "one.json") if a != "--no-cache"]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert runner.invoke(app, [*args, *cache]).exit_code == EXIT_OK
    args[args.index("--out") + 1] = str(tmp_path / "two.json")
    assert runner.invoke(app, [*args, *cache]).exit_code == EXIT_OK
    first, second = read_run(tmp_path / "one.json"), read_run(tmp_path / "two.json")
    assert fake.stats.requests == 2
    assert (second.usage.llm_calls, second.usage.cache_hits) == (0, 2)
    assert [c.predicted for c in second.cases] == [c.predicted for c in first.cases]


def test_an_answer_that_does_not_parse_finds_nothing_without_a_reask(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    fake.rewrite = lambda arguments: {"findings": "none of note"}
    out = tmp_path / "naive.json"
    result = runner.invoke(app, naive_args(suite, fake, out))
    assert result.exit_code == EXIT_OK, result.output
    assert fake.stats.requests == 2  # no re-ask
    run = read_run(out)
    assert run.metrics.errored == 0 and run.metrics.overall.recall == 0.0
    assert all(c.predicted == () and c.warning and "findings" in c.warning for c in run.cases)
    assert run.usage.llm_calls == 2 and run.usage.input_tokens > 0
    assert "case cfo:" in result.output


def test_naive_kinds_and_event_ids_are_read_leniently_and_never_checked(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    fake.rewrite = lambda arguments: {"findings": [
        {"kind": "Preferences", "statement": "Said: I prefer dark mode in every app I",
         "event_ids": "d1"},
        {"kind": "constraint", "statement": "Works nights", "event_ids": ["zz9", 7],
         "quote": "not in any event"}]}
    out = tmp_path / "naive.json"
    assert runner.invoke(app, naive_args(suite, fake, out)).exit_code == EXIT_OK
    dark = read_run(out).case("dark")
    assert dark is not None
    assert [(p.kind, p.evidence) for p in dark.predicted] == [
        ("preference", ("d1",)), ("belief", ("zz9", "7"))]
    assert dark.metrics is not None and dark.metrics.overall.recall == 1.0


def test_events_that_do_not_fit_the_context_find_nothing_and_are_still_scored(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    fake.faults = ["context-length"]
    out = tmp_path / "naive.json"
    result = runner.invoke(app, naive_args(suite, fake, out, "--concurrency", "1"))
    assert result.exit_code == EXIT_OK, result.output
    run = read_run(out)
    assert run.metrics.errored == 0 and fake.stats.requests == 2
    missed = [c for c in run.cases if c.warning]
    assert len(missed) == 1 and "do not fit the model's context" in (missed[0].warning or "")
    assert missed[0].predicted == () and missed[0].metrics is not None


@pytest.mark.parametrize(("extra", "message"), [
    (["--baseline", "smart"], "unknown baseline 'smart'; known: naive"),
    (["--baseline", "naive", "--oracle"], "cannot be combined with --oracle"),
    (["--baseline", "naive", "--schema", "fixtures/schemas/b2b_saas.yaml"],
     "cannot be combined with --schema"),
    (["--baseline", "naive", "--prompt", "prompts/extract"], "cannot be combined with --prompt"),
])
def test_bad_baseline_options_exit_1(suite: Path, tmp_path: Path, extra: list[str],
                                     message: str) -> None:
    result = runner.invoke(app, ["run", str(suite), "--out", str(tmp_path / "r.json"), *extra])
    assert result.exit_code == EXIT_ERROR
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "r.json").exists()


def _runs(suite: Path, fake: FakeProvider, tmp_path: Path) -> tuple[Path, Path]:
    """doxa's run (its record for e3 says something else) and the naive run, as files."""
    def doxa_misses_e3(arguments: dict[str, Any]) -> dict[str, Any]:
        if "records" not in arguments:
            return arguments
        return {**arguments, "records": [
            {**r, "statement": "Likes turtles"} if r["evidence"][0]["event_id"] == "e3" else r
            for r in arguments["records"]]}

    fake.rewrite = doxa_misses_e3
    doxa, naive = tmp_path / "doxa.json", tmp_path / "naive.json"
    result = runner.invoke(app, ["run", str(suite), "--model", "openai/fake", "--base-url",
                                 fake.base_url, "--out", str(doxa), "--no-cache"])
    assert result.exit_code == EXIT_OK, result.output
    assert runner.invoke(app, naive_args(suite, fake, naive)).exit_code == EXIT_OK
    return doxa, naive


def test_compare_lists_what_only_the_baseline_found_first(
        suite: Path, fake: FakeProvider, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    doxa, naive = _runs(suite, fake, tmp_path)
    monkeypatch.setattr(cli, "console", Console(width=250))
    result = runner.invoke(app, ["compare", str(doxa), str(naive)])
    assert result.exit_code == EXIT_OK, result.output
    out = result.output
    assert f"B: {naive} (baseline naive, openai/fake, prompt naive@" in out
    assert f"A: {doxa} (doxa, openai/fake, prompt extract@" in out
    first = out.index("1 expected record(s) the naive baseline finds and doxa misses")
    assert first < out.index("Said: We plan to add forty seats after the") < out.index(
        "per suite") < out.index("metrics (B − A)")
    suites = out[out.index("per suite"):out.index("per kind")]
    assert re.search(r"everyday\W+1\W+1\.000\W+1\.000", suites)
    assert re.search(r"saas\W+1\W+0\.500\W+1\.000", suites)
    assert re.search(r"all\W+2\W+0\.667\W+1\.000", suites)
    assert "0 expected record(s) doxa finds and the naive baseline misses" in out
    assert f"({NAIVE_CONFIDENCE:.2f})" not in out  # a stand-in, not the baseline's confidence

    as_json = json.loads(runner.invoke(app, ["compare", str(naive), str(doxa), "--json"]).stdout)
    view = as_json["side_by_side"]  # either order: doxa is the run without a baseline
    assert [(f["case_id"], f["expected"]["statement"]) for f in view["baseline_only"]] == [
        ("cfo", "Said: We plan to add forty seats after the")]
    assert as_json["a"]["baseline"] == "naive" and as_json["b"]["baseline"] is None


def test_side_by_side_scores_tokens_per_case_and_the_markdown_table(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    doxa_path, naive_path = _runs(suite, fake, tmp_path)
    doxa, naive = read_run(doxa_path), read_run(naive_path)
    view = side_by_side(doxa, naive)
    every = view.suites[-1]
    assert every.group == "all" and every.cases == 2
    assert every.doxa.input_tokens_per_case == doxa.usage.input_tokens / 2
    assert every.baseline.input_tokens_per_case == naive.usage.input_tokens / 2
    assert (every.doxa.expected, every.doxa.found, every.baseline.found) == (3, 2, 3)
    assert [k.group for k in view.kinds] == ["goal", "preference"]
    table = markdown_table(view)
    assert table.splitlines()[0] == (
        "| suite | cases | doxa recall | naive recall | doxa evidence precision | naive "
        "evidence precision | doxa input tokens/case | naive input tokens/case |")
    assert "| saas | 1 | 0.500 | 1.000 | 1.000 | 1.000 |" in table
    printed = runner.invoke(app, ["compare", str(doxa_path), str(naive_path), "--markdown"])
    assert printed.exit_code == EXIT_OK and printed.stdout == table
    both_doxa = runner.invoke(app, ["compare", str(doxa_path), str(doxa_path), "--markdown"])
    assert both_doxa.exit_code == EXIT_ERROR and "--baseline" in both_doxa.output
    assert compare_runs(doxa, doxa).side_by_side is None


def test_report_renders_the_baseline_run_and_doxa_beside_it(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    doxa, naive = _runs(suite, fake, tmp_path)
    page = tmp_path / "naive.html"
    assert runner.invoke(app, ["report", str(naive), "--html", str(page)]).exit_code == EXIT_OK
    html = page.read_text()
    assert "baseline naive" in html and 'id="no-calibration"' in html
    beside = tmp_path / "beside.html"
    result = runner.invoke(app, ["report", str(doxa), "--html", str(beside),
                                 "--baseline", str(naive)])
    assert result.exit_code == EXIT_OK, result.output
    html = beside.read_text()
    assert html.index('id="beside-baseline"') < html.index('id="baseline-only"') < html.index(
        'id="beside-suite"') < html.index('id="beside-kind"') < html.index("<h2>Calibration")
    assert "Said: We plan to add forty seats after the" in html
    wrong = runner.invoke(app, ["report", str(naive), "--html", str(beside),
                                "--baseline", str(doxa)])
    assert wrong.exit_code == EXIT_ERROR and "not a baseline run" in wrong.output


def test_committed_run_files_still_load_as_doxa_runs() -> None:
    for path in sorted(BASELINES.glob("*.json")):
        run = read_run(path)
        assert run.baseline is None and all(c.baseline is None for c in run.cases), path
        assert run.metrics.cases > 0


def test_committed_naive_runs_load_as_baselines_and_sit_beside_doxa() -> None:
    """The per-suite naive runs of evals/baselines/naive are what the README's table reads:
    each is a baseline run, scored without calibration, and lines up with the committed
    doxa run of the same cases in the side-by-side view."""
    everything = read_run(BASELINES / "qwen2.5-coder-1.5b.json")
    naive_runs = sorted((BASELINES / "naive").glob("*.json"))
    assert len(naive_runs) >= 10
    for path in naive_runs:
        naive = read_run(path)
        assert naive.baseline == "naive" and naive.metrics.calibration.ece is None, path
        assert naive.usage.llm_calls == naive.metrics.cases and naive.usage.cache_hits == 0
        suite = naive.suite.rstrip("/").rsplit("/", 1)[-1]
        # a suite the full run does not cover has its own doxa run of the same sitting
        own = BASELINES / f"doxa-{suite}-qwen2.5-coder-1.5b.json"
        doxa = read_run(own) if own.exists() else everything
        view = side_by_side(doxa, naive)
        rows = {row.group: row for row in view.suites}
        assert rows[suite].cases == naive.metrics.cases, path
        assert f"| {suite} |" in markdown_table(view)


def test_an_event_is_one_compact_line() -> None:
    line = event_line(parse_event({
        "id": "x1", "user_id": "u", "type": "chat_message", "timestamp": "2026-03-02T10:00:00Z",
        "text": "No dairy,\n  please.", "properties": {"b": 2, "a": "é"}}))
    assert line == 'x1 | 2026-03-02T10:00:00Z | chat_message | No dairy, please. | {"a":"é","b":2}'


def test_a_run_over_one_folder_is_one_row_and_other_cases_are_left_out(
        suite: Path, fake: FakeProvider) -> None:
    one = RunSettings(suite=str(suite / "saas"), model="openai/fake", base_url=fake.base_url,
                      cache=False)
    every = one.model_copy(update={"suite": str(suite)})
    doxa = asyncio.run(run_eval(every, load_suite(suite)))
    naive = asyncio.run(run_eval(one.model_copy(update={"baseline": "naive"}),
                                 load_suite(suite / "saas")))
    view = side_by_side(doxa, naive)
    assert [row.group for row in view.suites] == ["saas"] and view.left_out == ("dark",)


def test_runs_count_calls_per_calling_batch_reasks_and_tokens_per_find(
        suite: Path, fake: FakeProvider, tmp_path: Path) -> None:
    fake.faults = ["invalid"]  # the first answer cites no event: its record is re-asked once
    doxa_path = tmp_path / "doxa.json"
    result = runner.invoke(app, ["run", str(suite / "everyday"), "--model", "openai/fake",
                                 "--base-url", fake.base_url, "--out", str(doxa_path),
                                 "--no-cache", "--json"])
    assert result.exit_code == EXIT_OK, result.output
    doxa = read_run(doxa_path)
    assert (doxa.usage.llm_calls, doxa.usage.calling_batches, doxa.usage.reasks) == (2, 1, 1)
    ratios = json.loads(result.stdout)["usage_ratios"]
    assert ratios["calls_per_calling_batch"] == 2.0 and ratios["reasks"] == 1.0
    assert ratios["input_tokens_per_case"] == doxa.usage.input_tokens
    assert ratios["input_tokens_per_found"] == doxa.usage.input_tokens  # one record found
    # the re-ask's share of the tokens (the faulty first answer reports 10 of its own)
    assert doxa.usage.reask_input_tokens == doxa.usage.input_tokens - 10
    assert ratios["reask_input_tokens"] == doxa.usage.reask_input_tokens
    assert ratios["repairs"] == 0.0

    naive_path = tmp_path / "naive.json"
    assert runner.invoke(app, naive_args(suite / "everyday", fake, naive_path)).exit_code == 0
    naive = read_run(naive_path)
    assert (naive.usage.llm_calls, naive.usage.calling_batches, naive.usage.reasks) == (1, 1, 0)
    deltas = {d.name: d for d in compare_runs(doxa, naive).metrics}
    assert (deltas["calls_per_calling_batch"].a, deltas["calls_per_calling_batch"].b) == (2, 1)
    assert (deltas["reasks"].a, deltas["reasks"].b) == (1, 0)
    assert deltas["reask_input_tokens"].a == doxa.usage.reask_input_tokens
    assert (deltas["repairs"].a, deltas["repairs"].b) == (0, None)
    assert deltas["input_tokens_per_found"].b == naive.usage.input_tokens


def test_run_files_from_before_the_counts_show_them_as_not_measured() -> None:
    from doxa.eval.metrics import usage_values

    run = read_run(BASELINES / "qwen2.5-coder-1.5b.json")
    ratios = usage_values(run.usage, run.metrics)
    assert ratios["calls_per_calling_batch"] is None and ratios["reasks"] is None
    assert ratios["input_tokens_per_case"] == pytest.approx(364_468 / 81)
