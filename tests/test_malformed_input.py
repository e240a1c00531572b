"""Hostile input: 1,000+ generated malformed events and files each end in a typed error,
with nothing written to the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doxa.engine import Engine
from doxa.errors import DoxaError
from doxa.events.parse import load_file
from doxa.store import MemoryStore

GOOD = {"id": "e1", "user_id": "u1", "type": "chat_message",
        "timestamp": "2026-03-02T10:00:00Z", "text": "hello there"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3), max_leaves=8)
BAD_FIELD = st.sampled_from([
    ("id", None), ("id", ""), ("id", 5), ("type", None), ("type", ["x"]),
    ("timestamp", "2026-03-02T10:00:00"), ("timestamp", "not a time"), ("timestamp", 17),
    ("timestamp", None), ("text", {"a": 1}), ("text", "x" * 20_001), ("properties", "str"),
    ("properties", [1, 2]), ("user_id", ""), ("user_id", 3),
])


class NoCalls:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError("no LLM call may happen for invalid input")


@st.composite
def malformed_event(draw: st.DrawFn) -> object:
    choice = draw(st.integers(0, 2))
    if choice == 0:  # one bad field in an otherwise good event, plus noise keys
        field, value = draw(BAD_FIELD)
        event = {**GOOD, **draw(st.dictionaries(st.sampled_from(["extra", "meta"]),
                                                json_values, max_size=2))}
        if value is None:
            event.pop(field, None)
        else:
            event[field] = value
        return event
    if choice == 1:  # not an object at all
        return draw(st.none() | st.integers() | st.text(max_size=10) | st.lists(json_values,
                                                                                max_size=3))
    return {**GOOD, "timestamp": draw(st.text(max_size=25).filter(lambda t: "T" not in t))}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.just(GOOD) | malformed_event(), min_size=1, max_size=5).filter(
    lambda evs: any(e is not GOOD for e in evs)))
def test_malformed_events_raise_typed_errors_and_write_nothing(events: list[object]) -> None:
    store = MemoryStore()
    engine = Engine(store=store, client=NoCalls())
    try:
        engine.ingest_sync("u1", events)  # type: ignore[arg-type]
    except DoxaError:
        pass
    else:
        raise AssertionError(f"accepted malformed input: {events!r}")
    finally:
        engine.close_sync()
    assert store._models == {} and store._ledger == {}


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=60) | st.text(max_size=60).map(str.encode)
                | malformed_event().map(lambda e: json.dumps(e).encode()), min_size=1,
                max_size=6))
def test_malformed_files_are_refused_whole_with_a_typed_error(tmp_path_factory: Any,
                                                              lines: list[bytes]) -> None:
    path: Path = tmp_path_factory.mktemp("f") / "events.jsonl"
    good = json.dumps(GOOD).encode()
    path.write_bytes(b"\n".join([good, *[ln.replace(b"\n", b" ") for ln in lines]]))
    try:
        report = load_file(path)
    except DoxaError:
        return
    # Only lines that happened to be valid events (or blank) may pass.
    assert all(e.id for e in report.events)
