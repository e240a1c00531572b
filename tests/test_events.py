"""Events in: every kind of invalid input is named by line (or index) and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doxa.errors import InvalidEventError, InvalidEventsError
from doxa.events.parse import Event, load_events, load_file

GOOD = {"id": "e1", "user_id": "u1", "type": "page_view", "timestamp": "2026-03-02T10:00:00Z",
        "properties": {"path": "/pricing"}}


def write_jsonl(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def only_error(exc: pytest.ExceptionInfo[InvalidEventsError]) -> InvalidEventError:
    assert len(exc.value.errors) == 1
    return exc.value.errors[0]


@pytest.mark.parametrize(("bad", "field", "words"), [
    ({k: v for k, v in GOOD.items() if k != "id"}, "id", "required"),
    ({k: v for k, v in GOOD.items() if k != "type"}, "type", "required"),
    ({k: v for k, v in GOOD.items() if k != "timestamp"}, "timestamp", "required"),
    ({**GOOD, "timestamp": "2026-03-02T10:00:00"}, "timestamp", "no time zone"),
    ({**GOOD, "timestamp": "yesterday"}, "timestamp", "datetime"),
    ({**GOOD, "user_id": ""}, "user_id", "at least 1"),
    ({**GOOD, "properties": ["not", "a", "dict"]}, "properties", "dictionary"),
    ({**GOOD, "text": 42}, "text", "string"),
    ({**GOOD, "id": " e1"}, "id", "white space"),
])
def test_invalid_line_is_named_by_line_and_field(
    tmp_path: Path, bad: dict[str, object], field: str, words: str
) -> None:
    path = write_jsonl(tmp_path, json.dumps(GOOD), json.dumps({**bad, "id": bad.get("id", "e2")}
                                                               if "id" in bad else bad))
    with pytest.raises(InvalidEventsError) as exc:
        load_file(path)
    err = only_error(exc)
    assert (err.line, err.field) == (2, field)
    assert words in str(err)
    assert f"line 2, field '{field}'" in str(exc.value)


def test_broken_json_and_non_objects_are_named_by_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, json.dumps(GOOD), "{not json", "[1, 2]", "")
    with pytest.raises(InvalidEventsError) as exc:
        load_file(path)
    assert [(e.line, e.field) for e in exc.value.errors] == [(2, None), (3, None)]
    assert "not valid JSON" in str(exc.value.errors[0])
    assert "expected a JSON object" in str(exc.value.errors[1])


def test_a_file_with_any_invalid_line_is_refused_whole(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, json.dumps(GOOD), json.dumps({**GOOD, "id": "e2",
                                                               "timestamp": "nope"}))
    with pytest.raises(InvalidEventsError, match="nothing was ingested"):
        load_file(path)


def test_skip_invalid_keeps_the_valid_and_reports_the_rest(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, json.dumps(GOOD), "{oops", json.dumps({**GOOD, "id": "e3"}))
    report = load_file(path, skip_invalid=True)
    assert [e.id for e in report.events] == ["e1", "e3"]
    assert [e.line for e in report.skipped] == [2]


def test_json_array_errors_name_the_index(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "id": "e2", "timestamp": "2026-03-02"}]))
    with pytest.raises(InvalidEventsError) as exc:
        load_file(path)
    assert (exc.value.errors[0].index, exc.value.errors[0].field) == (1, "timestamp")


def test_python_objects_name_the_index_and_fill_the_default_user() -> None:
    report = load_events([{k: v for k, v in GOOD.items() if k != "user_id"}],
                         default_user_id="u9")
    assert report.events[0].user_id == "u9"
    with pytest.raises(InvalidEventsError) as exc:
        load_events([GOOD, "a string"])
    assert exc.value.errors[0].index == 1


def test_same_id_with_different_content_is_an_error_and_exact_repeats_are_not() -> None:
    report = load_events([GOOD, GOOD])
    assert len(report.events) == 1
    with pytest.raises(InvalidEventsError) as exc:
        load_events([GOOD, {**GOOD, "type": "click"}])
    assert exc.value.errors[0].field == "id"


def test_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(InvalidEventsError, match="not UTF-8"):
        load_file(path)


def test_event_is_frozen_and_timezone_aware() -> None:
    event = Event.model_validate(GOOD)
    assert event.timestamp.utcoffset() is not None
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        event.id = "x"  # type: ignore[misc]
