"""`--user` on the command line, checked by the same rule as events and the HTTP API.

`--user` names a user to write for, so it must be an id a caller may give (no `/`). The
commands that read or erase one user (show, explain, history, delete, export) take
any id the store holds, so an operator can reach, and erase, a user written through the HTTP
server (`<tenant>/<user id>`) or stored under earlier rules.
"""

from __future__ import annotations

from typing import Annotated

import typer

from doxa.events.fields import check_user_id


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
