"""User ids on the command line, checked by the same rules as events and the HTTP API.

`--user` names a user to write for, so it must be an id a caller may give (no `/`). The
commands that read or erase one user (show, explain, history, outcome, delete, export) also
accept the store's `<tenant>/<user id>` form, so an operator can reach, and erase, a user
written through the HTTP server.
"""

from __future__ import annotations

from typing import Annotated

import typer

from doxa.event_fields import check_stored_user_id, check_user_id


def caller_user_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_user_id(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def stored_user_id(value: str) -> str:
    try:
        return check_stored_user_id(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


UserOpt = Annotated[str | None, typer.Option(
    "--user", "-u", callback=caller_user_id,
    help="only this user (also fills events that have no user_id)")]
UserArg = Annotated[str, typer.Argument(
    callback=stored_user_id, help="user id (a server tenant's user: <tenant>/<user id>)")]
