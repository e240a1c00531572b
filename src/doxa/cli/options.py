"""What every doxa command shares: the defaults, the options that mean the same everywhere,
and the JSON printer behind every `--json`.

Defined once so that `doxa ingest`, `doxa backfill`, `doxa serve` and `doxa eval run` read
the same environment (DOXA_DB, DOXA_MODEL), spell a flag the same way, and cannot drift
apart when one of them changes.

`--user` names a user to write for, so it must be an id a caller may give (no `/`), checked
by the same rule as events and the HTTP API. The commands that read or erase one user (show,
explain, history, delete, export) take any id the store holds as an argument instead, so an
operator can reach, and erase, a user written through the HTTP server (`<tenant>/<user id>`)
or stored under earlier rules.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from doxa.events.fields import check_user_id
from doxa.model.records import Change

DEFAULT_MODEL: Final = os.environ.get("DOXA_MODEL", "openai/gpt-4o-mini")
DEFAULT_DB: Final = os.environ.get("DOXA_DB", "doxa.db")

DbOpt = Annotated[str, typer.Option("--db", help="SQLite path or store URL "
                                    "(sqlite:///x.db, postgresql://..., memory://)")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="provider/model, e.g. "
                                       "openai/gpt-4o-mini, anthropic/claude-haiku-4-5, "
                                       "ollama/llama3.1")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="API base URL: an "
                                                "OpenAI-compatible server (vLLM, llama.cpp) or "
                                                "the provider's own; default OPENAI_BASE_URL / "
                                                "ANTHROPIC_BASE_URL")]
SchemaOpt = Annotated[Path | None, typer.Option("--schema", help="model schema (YAML/TOML): "
                      "extract only its dimensions")]
WhyOpt = Annotated[bool, typer.Option("--why", metavar="", help="after each batch that yields "
                   "a goal, one more short call asks why (the causal links its events show: "
                   "because, constrained_by, blocked_by, in_order_to)")]
# metavar "": a flag, shown as `--json` (typer would show `--json <bool>`, which reads as if
# it took a value).
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="print JSON instead of "
                                       "text")]
UserArg = Annotated[str, typer.Argument(help="user id")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="the tenant whose user this "
                      "is: `doxa serve` stores tenant T's user u as T/u")]


def caller_user_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_user_id(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


UserOpt = Annotated[str | None, typer.Option(
    "--user", "-u", callback=caller_user_id,
    help="only this user (also fills events that have no user_id)")]


def store_url(db: str) -> str:
    """`--db` as a store URL: a bare path is a SQLite file."""
    return db if "://" in db else f"sqlite:///{db}"


def print_json(data: Any) -> None:
    """What every `--json` prints: indented JSON on stdout, dates and paths as strings."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_changes_json(changes: Sequence[Change]) -> None:
    """What `--json` prints for a command that writes to a model (outcome, observe, link):
    the changes, and whether the write had been recorded before (then there are none)."""
    print_json({"already_recorded": not changes,
                "changes": [c.model_dump(mode="json") for c in changes]})
