"""The CLI reference page is `doxa --help`, command by command, and says so verbatim.

Why: docs/reference/cli.md is generated (scripts/cli_reference.py) and committed so the
site builds without running doxa; this test is what keeps it from drifting when a command
or flag changes. And help text is text, not markup: `doxa[ray]` must read `doxa[ray]`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from doxa.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "cli_reference.py"
COMMANDS = ("ingest", "serve", "backfill", "show", "explain", "history", "outcome",
            "trajectories", "users", "delete", "export", "demo", "eval run", "eval compare",
            "eval report", "schema check", "schema init")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_cli_reference_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    # The caller's settings change the defaults doxa shows; the page must not take them.
    monkeypatch.setenv("DOXA_DB", "/somewhere/else.db")
    page = _generator().render()
    committed = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    assert committed == page, "docs/reference/cli.md is stale: run python scripts/cli_reference.py"
    for command in COMMANDS:
        assert f"## `doxa {command}`" in page
    assert "/somewhere/else.db" not in page and "[default: doxa.db]" in page


def test_check_mode_fails_on_a_stale_page_and_write_mode_fixes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = _generator()
    monkeypatch.setattr(generator, "REFERENCE", tmp_path / "reference" / "cli.md")
    monkeypatch.setattr(generator, "render", lambda: "# CLI reference\n\nnew\n")
    assert generator.main(["--check"]) == 1  # no page yet
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "cli.md").write_text("# CLI reference\n\nold\n")
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0
    assert (tmp_path / "reference" / "cli.md").read_text() == "# CLI reference\n\nnew\n"


def test_help_text_is_printed_verbatim_not_as_markup() -> None:
    out = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert "doxa[ray]" in out.output  # rich markup would have eaten "[ray]"
