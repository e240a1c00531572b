"""Where doxa's bundled data lives, in a source checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The bundled folder `name` (`prompts`, `demo`): the wheel's copy, else the checkout's.

    In a wheel the folders are force-included under `doxa/_data/`; in an editable install
    they are the repository's own `prompts/` and `fixtures/demo/`, so edits apply at once.
    """
    bundled = _PACKAGE / "_data" / name
    if bundled.is_dir():
        return bundled
    root = _PACKAGE.parents[1]
    checkout = root / (f"fixtures/{name}" if name in ("demo", "schemas") else name)
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"doxa's bundled '{name}' folder is missing (looked in {bundled})")
