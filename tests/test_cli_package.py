"""The CLI as one package: one error helper, `--json` on the commands that print data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import doxa.cli
from doxa.cli.main import app

CLI = Path(doxa.cli.__file__).parent
ROOT = Path(__file__).resolve().parents[1]


def test_only_the_terminal_module_writes_an_error_line() -> None:
    """Every failure goes through cli/terminal.py's print_error: no module writes its own
    "error:" label, markup or not, and none reads DOXA_DB / DOXA_MODEL for a default of
    its own."""
    for path in sorted(CLI.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "terminal.py":
            assert not re.search(r"error:\[/|\"error:\"|'error:'", text), path.name
        if path.name != "options.py":
            assert not re.search(r"DOXA_(DB|MODEL)\b\W*,", text), path.name


def test_schema_check_json_is_the_schema_as_read() -> None:
    out = CliRunner().invoke(app, ["schema", "check", str(ROOT / "fixtures/schemas/b2b_saas.yaml"),
                                   "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["dimensions"] and data["other"] in ("drop", "keep")


def test_delete_json_names_the_erased_user(tmp_path: Path) -> None:
    db = tmp_path / "doxa.db"
    runner = CliRunner()
    assert runner.invoke(app, ["users", "--db", str(db)]).exit_code == 1  # no store yet
    from doxa.store.sqlite import SqliteStore

    SqliteStore(db)  # an empty store to delete from
    out = runner.invoke(app, ["delete", "someone", "--db", str(db), "--yes", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == {"erased": "someone"}


@pytest.mark.parametrize("args", [["users"], ["show", "u1"], ["history", "u1"],
                                  ["trajectories"], ["delete", "u1", "--yes"],
                                  ["schema", "check", "x.yaml"], ["buffers"], ["worker"],
                                  ["calibration", "--all"], ["eval", "calibrate"]])
def test_commands_that_print_data_take_json(args: list[str]) -> None:
    out = CliRunner().invoke(app, [*args, "--help"])
    assert out.exit_code == 0 and "--json" in out.output, args
