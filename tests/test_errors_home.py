"""Every exception class doxa defines lives in doxa/errors.py: one error tree to read."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import doxa.errors

SRC = Path(doxa.errors.__file__).parent


def _exception_bases() -> set[str]:
    """The names of doxa.errors' classes and of Python's built-in exceptions."""
    builtin = {name for name, value in vars(builtins).items()
               if isinstance(value, type) and issubclass(value, BaseException)}
    ours = {name for name, value in vars(doxa.errors).items()
            if isinstance(value, type) and issubclass(value, BaseException)}
    return builtin | ours


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def test_no_exception_class_outside_errors_py() -> None:
    bases = _exception_bases()
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == Path(doxa.errors.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    _base_name(b) in bases or (_base_name(b) or "").endswith(("Error",
                                                                             "Exception"))
                    for b in node.bases):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert found == [], f"exception classes outside doxa/errors.py: {found}"


def test_the_walk_would_see_one() -> None:
    """The check above reads class bases: a stray error class in a module is reported."""
    tree = ast.parse("from doxa.errors import DoxaError\nclass Stray(DoxaError): ...\n"
                     "class AlsoStray(ValueError): ...\n")
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    assert [_base_name(c.bases[0]) in _exception_bases() for c in classes] == [True, True]


def test_every_error_is_public() -> None:
    import doxa

    errors = {name for name, value in vars(doxa.errors).items()
              if isinstance(value, type) and issubclass(value, doxa.errors.DoxaError)}
    assert errors - set(doxa.__all__) == set()
