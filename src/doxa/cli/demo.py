"""`doxa demo`: the whole pipeline on fixtures/demo, with a recorded or a live LLM."""

from __future__ import annotations

from pathlib import Path

from doxa.engine import Engine, IngestResult
from doxa.events.parse import load_file
from doxa.llm.extractor import ExtractionSettings
from doxa.model.records import UserModel
from doxa.resources import data_dir
from doxa.testing.recording import CassetteMeta, cassette, read_meta, write_meta

DEMO_USER = "demo-user"


async def run_demo(model: str | None = None, base_url: str | None = None,
                   store: str = "memory://",
                   record_to: Path | None = None,
                   timeout_s: float | None = None) -> tuple[IngestResult, UserModel]:
    """Ingest the demo events and return the result and the model.

    Without `model`, the LLM's answers come from the recorded cassette: every other step
    (validation, relevance, prompt rendering, HTTP client, parsing, merge, store) runs.
    With `model` and `record_to`, the live traffic is recorded there (scripts/record-cassettes).
    `timeout_s` bounds each live request (a small model on a laptop's CPU may need minutes);
    it is not part of the request body, so a recording replays whatever it was.
    """
    folder = data_dir("demo")
    events = load_file(folder / "events.jsonl").events
    if model is not None:
        settings = ExtractionSettings(timeout_s=timeout_s) if timeout_s else None
        async with Engine(model=model, store=store, base_url=base_url,
                          settings=settings) as engine:
            if record_to is None:
                result = await engine.ingest(DEMO_USER, events)
            else:
                record_to.unlink(missing_ok=True)  # noqa: ASYNC240 - a one-off CLI step
                with cassette(record_to, "all"):
                    result = await engine.ingest(DEMO_USER, events)
                write_meta(record_to, CassetteMeta(model=model, base_url=engine.spec.base_url,
                                                   recorded_with="doxa demo --record"))
            return result, await engine.model(DEMO_USER)
    recording = folder / "cassette.yaml"
    meta = read_meta(recording)
    async with Engine(model=meta.model, store=store, base_url=meta.base_url) as engine:
        with cassette(recording, "none"):
            result = await engine.ingest(DEMO_USER, events)
        return result, await engine.model(DEMO_USER)
