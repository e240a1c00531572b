"""The wheel's extras: what a module shipped in doxa imports is installable by its name."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras: dict[str, list[str]] = data["project"]["optional-dependencies"]
    return extras


def test_the_fake_provider_dependency_is_the_testing_extra() -> None:
    """doxa.testing.fake_provider imports aiohttp: `doxa[testing]` brings it, and dev has
    it through that extra rather than a copy of the pin."""
    source = (ROOT / "src/doxa/testing/fake_provider.py").read_text(encoding="utf-8")
    imported = {node.module.split(".")[0] for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom) and node.module}
    assert "aiohttp" in imported
    extras = _extras()
    assert any(req.startswith("aiohttp") for req in extras["testing"])
    assert "doxa[testing]" in extras["dev"]
    assert not any(req.startswith("aiohttp") for req in extras["dev"])
