"""The CLI's consoles: whatever a user, an event or an LLM wrote is printed as it is.

Statements, quotes, user ids, file names and error messages can hold square brackets; rich
would read `[/bold]` as markup and crash, drop `[red]` from `a[red]b`, and turn `[link=...]`
into a terminal hyperlink. So every console doxa prints through has markup (and rich's
guess-the-syntax highlighting) off, and doxa's own styling is applied with `style=` or
`Text` pieces, which never parse the text they carry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from doxa.errors import DoxaError

T = TypeVar("T")
EXIT_ERROR = 1
"""The exit code of a failure the user can fix: bad input, a missing key, a provider error."""


def _plain_console(*, stderr: bool = False) -> Console:
    # Tables stay readable when piped or captured (rich would otherwise assume 80 columns).
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, markup=False, highlight=False,
                   width=None if probe.is_terminal else 140)


console = _plain_console()
err_console = _plain_console(stderr=True)


def labelled(label: str, style: str, message: str) -> Text:
    """`label` in `style`, then the message verbatim: "error: ...", "skipped ..."."""
    return Text.assemble((label, style), " ", message)


def print_labelled(label: str, style: str, message: str) -> None:
    """One line on stderr: `label` in `style`, then the message as it is, never re-wrapped
    (a path or an id in it stays whole for a copy and paste, and a grep finds it)."""
    err_console.print(labelled(label, style, message), soft_wrap=True)


def print_error(problem: str | BaseException) -> None:
    """The one way the CLI reports a failure: a red "error:" and the message, on stderr.

    An error that knows how to say what to do on the command line (`cli_message`, e.g. a
    missing API key naming --base-url rather than base_url=) says it that way."""
    message = problem if isinstance(problem, str) else str(
        getattr(problem, "cli_message", None) or problem)
    print_labelled("error:", "red", message)


def fail(problem: str | BaseException, code: int = EXIT_ERROR) -> NoReturn:
    """Report the problem (`print_error`) and end the command with `code`."""
    print_error(problem)
    raise typer.Exit(code)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Inside it, doxa's typed errors end the command: the message, then exit code 1.
    Anything else is a bug and keeps its traceback."""
    try:
        yield
    except DoxaError as exc:
        print_error(exc)
        raise typer.Exit(EXIT_ERROR) from None


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to the end; doxa's typed errors end the command (`exit_on_error`)."""
    async def main() -> T:
        return await make()
    with exit_on_error():
        return asyncio.run(main())
