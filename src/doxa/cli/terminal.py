"""The CLI's consoles: whatever a user, an event or an LLM wrote is printed as it is.

Statements, quotes, user ids, file names and error messages can hold square brackets; rich
would read `[/bold]` as markup and crash, drop `[red]` from `a[red]b`, and turn `[link=...]`
into a terminal hyperlink. So every console doxa prints through has markup (and rich's
guess-the-syntax highlighting) off, and doxa's own styling is applied with `style=` or
`Text` pieces, which never parse the text they carry.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


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


def print_error(problem: str | BaseException) -> None:
    """The one way the CLI reports a failure: a red "error:" and the message, on stderr.

    An error that knows how to say what to do on the command line (`cli_message`, e.g. a
    missing API key naming --base-url rather than base_url=) says it that way."""
    message = problem if isinstance(problem, str) else str(
        getattr(problem, "cli_message", None) or problem)
    err_console.print(labelled("error:", "red", message))
