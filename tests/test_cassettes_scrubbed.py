"""No recording may hold a secret: authorization, x-api-key, organization ids or cookies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = sorted([*ROOT.joinpath("tests", "cassettes").glob("**/*.yaml"),
                     *ROOT.joinpath("fixtures").glob("**/*cassette*.yaml")])
FORBIDDEN = {"authorization", "x-api-key", "api-key", "openai-organization", "openai-project",
             "anthropic-organization-id", "cookie", "set-cookie"}


def test_there_are_recordings_to_check() -> None:
    assert RECORDINGS, "expected cassettes under tests/cassettes and fixtures/demo"


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_recording_has_no_secret_headers(path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    for i, interaction in enumerate(data.get("interactions", [])):
        for side in ("request", "response"):
            headers = {k.lower() for k in (interaction[side].get("headers") or {})}
            leaked = headers & FORBIDDEN
            assert not leaked, f"{path.name} interaction {i} {side} holds {sorted(leaked)}"
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}", text), (
        f"{path.name} may hold an API key")
