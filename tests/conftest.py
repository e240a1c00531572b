"""Shared test fixtures: recorded LLM sessions (vcrpy cassettes) and their recording mode.

Replay (the default, and always in CI): `record_mode` none, every request must match a
recording on method, path and exact body, and a cassette that was only partly played fails
the test. Recording: `DOXA_RECORD=1` with `DOXA_RECORD_MODEL` / `DOXA_RECORD_BASE_URL`
(see scripts/record-cassettes), which writes each cassette and its `.meta.json`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionSettings
from doxa.testing.recording import CassetteMeta, cassette, read_meta, write_meta

CASSETTES = Path(__file__).parent / "cassettes"
RECORDING = os.environ.get("DOXA_RECORD") == "1"

if RECORDING and os.environ.get("CI"):
    raise RuntimeError("DOXA_RECORD=1 is for refreshing cassettes, never for CI")


def record_target() -> CassetteMeta:
    return CassetteMeta(
        model=os.environ.get("DOXA_RECORD_MODEL", "openai/qwen2.5-coder-1.5b-instruct"),
        base_url=os.environ.get("DOXA_RECORD_BASE_URL") or None,
        recorded_with="scripts/record-cassettes",
    )


RecordedEngine = Callable[..., AbstractAsyncContextManager[Engine]]


@contextmanager
def recorded_session(name: str) -> Iterator[CassetteMeta]:
    """Replay (or record) every LLM request made inside the block; yields the model to ask."""
    path = CASSETTES / f"{name}.yaml"
    if RECORDING:
        path.unlink(missing_ok=True)
        meta = record_target()
    else:
        assert path.exists(), f"no recording {path}; run scripts/record-cassettes"
        meta = read_meta(path)
    with cassette(path, "all" if RECORDING else "none") as cas:
        yield meta
        if not RECORDING:
            assert cas.all_played, f"cassette {name} was only partly played"
    if RECORDING:
        write_meta(path, meta)


@pytest.fixture
def recorded_engine() -> RecordedEngine:
    """`async with recorded_engine("name", store=...) as engine:` replays (or records)."""

    @asynccontextmanager
    async def open_(name: str, **engine_kwargs: Any) -> AsyncIterator[Engine]:
        path = CASSETTES / f"{name}.yaml"
        if RECORDING:
            path.unlink(missing_ok=True)
            meta = record_target()
        else:
            assert path.exists(), f"no recording {path}; run scripts/record-cassettes"
            meta = read_meta(path)
        engine_kwargs.setdefault("store", "memory://")
        if RECORDING:  # a slow local model must not time out a recording (not in the body)
            engine_kwargs.setdefault("settings", ExtractionSettings(timeout_s=900.0))
        engine = Engine(model=meta.model, base_url=meta.base_url,
                        retry=RetryPolicy(attempts=1), **engine_kwargs)
        try:
            with cassette(path, "all" if RECORDING else "none") as cas:
                yield engine
                if not RECORDING:
                    assert cas.all_played, f"cassette {name} was only partly played"
        finally:
            await engine.close()
        if RECORDING:
            write_meta(path, meta)

    return open_
