"""`doxa observe`, `doxa link`, `doxa twin`, `doxa leverage` over a SQLite store, and the
multi-user fixture (fixtures/why/users.jsonl) with its planted high-leverage belief."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from doxa.cli.main import app

FIXTURE = Path(__file__).parents[1] / "fixtures" / "why" / "users.jsonl"
PLANTED = "Believes AI implementation is too complex for their team"


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_observe_link_and_twin_from_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "doxa.db")
    made = cli("observe", "u1", "goal", "Wants to automate first-line support", "--id", "g",
               "--evidence", "crm-42", "--confidence", "0.8", "--source", "rule:crm",
               "--at", "2026-02-02T10:00:00+00:00", "--db", db, "--json")
    assert made.exit_code == 0, made.output
    goal = json.loads(made.output)["changes"][0]
    assert (goal["action"], goal["confidence_after"]) == ("created", pytest.approx(0.8, abs=1e-4))
    motive = cli("observe", "u1", "motivation", "Needs to prove AI ROI to the board [/bold]",
                 "--id", "m", "--db", db)
    assert motive.exit_code == 0 and "[/bold]" in motive.output  # never read as markup
    linked = cli("link", "u1", "g", "because", "m", "--evidence", "crm-42", "--db", db, "--json")
    assert linked.exit_code == 0, linked.output
    assert json.loads(linked.output)["changes"][0]["action"] == "linked"
    again = cli("link", "u1", "g", "because", "m", "--evidence", "crm-42", "--db", db)
    assert again.exit_code == 0 and "already recorded" in again.output

    shown = cli("twin", "u1", "--db", db, "--json")
    twin = json.loads(shown.output)
    assert twin["goals"][0]["motivations"][0]["statement"] == (
        "Needs to prove AI ROI to the board [/bold]")
    prompt = cli("twin", "u1", "--db", db, "--prompt", "--min-confidence", "0.2")
    assert "- Goal: Wants to automate first-line support [0.80]" in prompt.output
    assert "  - because: Needs to prove AI ROI to the board [/bold]" in prompt.output

    explained = cli("explain", "u1", goal["record_id"], "--db", db)
    assert "observed by rule:crm" in explained.output
    assert "links" in explained.output and "because" in explained.output


def test_bad_observations_are_refused_naming_the_field(tmp_path: Path) -> None:
    db = str(tmp_path / "doxa.db")
    bad = cli("observe", "u1", "belief", "Believes setup is hard", "--source", "crm",
              "--db", db)
    assert bad.exit_code != 0 and "source" in bad.output
    wrong = cli("link", "u1", "g", "because_of", "m", "--db", db)
    assert wrong.exit_code != 0 and "RELATION must be one of" in wrong.output
    both = cli("observe", "u1", "--file", str(FIXTURE), "--db", db)
    assert both.exit_code != 0 and "not both" in both.output


def test_leverage_on_the_fixture_ranks_the_planted_belief_first_with_counts(
        tmp_path: Path) -> None:
    db = str(tmp_path / "doxa.db")
    loaded = cli("observe", "--file", str(FIXTURE), "--db", db, "--json")
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.output)["lines"] == {"traits": 36, "observation": 96,
                                                  "link": 40, "outcome": 36}
    reloaded = cli("observe", "--file", str(FIXTURE), "--db", db, "--json")
    assert json.loads(reloaded.output)["changes"] == []  # every line is idempotent by id

    printed = cli("leverage", "--outcome", "converted", "--db", db)
    assert printed.exit_code == 0, printed.output
    assert "not proven causes" in printed.output
    assert f"1. [belief] {PLANTED}" in printed.output
    assert "1/12 holders reached converted (8%) vs 17/24 others (71%)" in printed.output

    data = json.loads(cli("leverage", "--outcome", "converted", "--against", "churned",
                          "--user", "u03", "--db", db, "--json").output)
    first = data["groups"][0]
    assert first["label"] == PLANTED
    assert (first["stats"]["with_outcome"], first["stats"]["with_total"]) == (1, 12)
    assert first["stats"]["high"] < 1.0
    assert data["user"][0]["statement"].endswith("too complex for their team")
    assert data["user"][0]["direction"] == "away from"
