"""Readers for the collection formats (issue 17, item 1): each documented sample in
fixtures/collect/ reads to exactly the events of its hand-written doxa-format twin, and
`doxa ingest --format` builds the same model from both; detection names the candidates
when it cannot tell; a malformed message is refused naming the sender's own field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.errors import AmbiguousFormatError, InvalidEventError, InvalidEventsError
from doxa.events.formats import FORMATS, detect_format, iter_events, read_payload
from doxa.events.parse import Event, load_file
from doxa.model.records import UserModel
from doxa.testing.fake_provider import FakeProvider
from test_cli import acli, cli

SAMPLES = Path(__file__).parents[1] / "fixtures" / "collect"
COLLECTION_FORMATS = ("segment", "rudderstack", "posthog", "chat")
USER = "usr-4821"


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider().start()
    try:
        yield provider
    finally:
        await provider.stop()


def essence(model: UserModel) -> list[tuple[Any, ...]]:
    """What a model says, without the ids and clocks that differ between two stores."""
    return sorted((r.kind, r.statement, r.context, r.status, round(r.confidence, 6),
                   tuple(sorted(r.evidence_ids())), r.valid_from) for r in model.records)


def read(path: Path, fmt: str | None = None) -> list[Event | InvalidEventError]:
    return list(iter_events(path, fmt))


def write_lines(path: Path, *documents: object) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents), encoding="utf-8")
    return path


# -- the documented samples read to their doxa twins ----------------------------------------


@pytest.mark.parametrize("fmt", COLLECTION_FORMATS)
def test_each_sample_reads_to_exactly_its_doxa_twin(fmt: str) -> None:
    events = read(SAMPLES / f"{fmt}.jsonl", fmt)
    twin = load_file(SAMPLES / f"{fmt}.doxa.jsonl").events
    assert [e for e in events if isinstance(e, InvalidEventError)] == []
    assert events == twin
    assert {e.user_id for e in twin} == {USER}


@pytest.mark.parametrize("fmt", COLLECTION_FORMATS)
def test_each_sample_and_its_twin_are_detected(fmt: str) -> None:
    assert detect_format(SAMPLES / f"{fmt}.jsonl") == fmt
    assert detect_format(SAMPLES / f"{fmt}.doxa.jsonl") == "doxa"


def test_the_formats_doxa_ingest_takes() -> None:
    assert set(FORMATS) == {"doxa", "segment", "rudderstack", "posthog", "chat"}


@pytest.mark.parametrize("fmt", COLLECTION_FORMATS)
async def test_doxa_ingest_format_builds_the_same_model_as_the_twin(
        fmt: str, fake: FakeProvider, tmp_path: Path) -> None:
    models = []
    for name, args in (("twin", [str(SAMPLES / f"{fmt}.doxa.jsonl")]),
                       ("named", [str(SAMPLES / f"{fmt}.jsonl"), "--format", fmt]),
                       ("detected", [str(SAMPLES / f"{fmt}.jsonl")])):
        db = tmp_path / f"{name}.db"
        out = await acli("ingest", *args, "--db", str(db), "--model", "openai/fake",
                         "--base-url", fake.base_url, "--json")
        assert out.exit_code == 0, out.output
        assert list(json.loads(out.stdout)["users"]) == [USER]
        engine = Engine(store=f"sqlite:///{db}")
        try:
            models.append(await engine.model(USER))
        finally:
            await engine.close()
    assert models[0].records, "the fake provider extracts records from these events"
    assert essence(models[1]) == essence(models[0]) == essence(models[2])


# -- identity: anonymous events belong to the user an identify names -------------------------


def test_segment_anonymous_calls_before_identify_belong_to_the_identified_user(
        tmp_path: Path) -> None:
    anon = {"anonymousId": "anon-1", "timestamp": "2026-03-01T10:00:00Z"}
    file = write_lines(
        tmp_path / "s.jsonl",
        {**anon, "type": "track", "event": "Pricing Viewed", "messageId": "m1"},
        {**anon, "type": "identify", "userId": "u-9", "messageId": "m2"},
        {"anonymousId": "anon-2", "type": "track", "event": "Docs Read", "messageId": "m3",
         "timestamp": "2026-03-01T11:00:00Z"})
    users = {e.id: e.user_id for e in read(file) if isinstance(e, Event)}
    assert users == {"m1": "u-9", "m2": "u-9", "m3": "anon-2"}


def test_posthog_identify_links_the_anonymous_distinct_id(tmp_path: Path) -> None:
    file = write_lines(
        tmp_path / "p.jsonl",
        {"event": "$pageview", "uuid": "e1", "timestamp": "2026-03-01T10:00:00Z",
         "properties": {"distinct_id": "anon-1", "$current_url": "https://x.example/a"}},
        {"event": "$identify", "uuid": "e2", "distinct_id": "u-9",
         "timestamp": "2026-03-01T10:05:00Z",
         "properties": {"$anon_distinct_id": "anon-1", "$set": {"plan": "pro"}}})
    events = [e for e in read(file) if isinstance(e, Event)]
    assert [(e.user_id, e.type, e.properties) for e in events] == [
        ("u-9", "page_view", {"url": "https://x.example/a"}),
        ("u-9", "identify", {"plan": "pro"})]


# -- detection ----------------------------------------------------------------------------


def test_a_file_mixing_formats_is_refused_naming_both(tmp_path: Path) -> None:
    file = write_lines(
        tmp_path / "mixed.jsonl",
        {"type": "track", "event": "A", "userId": "u1", "timestamp": "2026-03-01T10:00:00Z"},
        {"event": "b", "distinct_id": "u1", "timestamp": "2026-03-01T10:00:00Z"})
    with pytest.raises(AmbiguousFormatError) as raised:
        detect_format(file)
    assert raised.value.candidates == ["segment", "posthog"]
    assert "line 1 looks like segment" in str(raised.value)
    assert "line 2 looks like posthog" in str(raised.value)


def test_one_line_that_reads_as_two_formats_is_refused(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "both.jsonl", {
        "id": "e1", "type": "identify", "userId": "u1", "timestamp": "2026-03-01T10:00:00Z"})
    with pytest.raises(AmbiguousFormatError) as raised:
        detect_format(file)
    assert raised.value.candidates == ["doxa", "segment"]


def test_doxa_ingest_says_the_candidates_and_how_to_choose(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "both.jsonl", {
        "id": "e1", "type": "identify", "userId": "u1", "timestamp": "2026-03-01T10:00:00Z"})
    out = cli("ingest", str(file), "--model", "openai/fake", "--base-url",
              "http://127.0.0.1:9", "--db", str(tmp_path / "x.db"))
    assert out.exit_code == 1
    flat = " ".join(out.output.split())
    assert "could be doxa or segment" in flat
    assert "--format doxa or --format segment" in flat
    assert not (tmp_path / "x.db").exists()


def test_a_spec_file_without_rudderstack_marks_reads_as_segment(tmp_path: Path) -> None:
    call = {"type": "track", "event": "A", "userId": "u1", "messageId": "m1",
            "timestamp": "2026-03-01T10:00:00Z"}
    assert detect_format(write_lines(tmp_path / "s.jsonl", call)) == "segment"
    marked = {**call, "rudderId": "r-1"}
    assert detect_format(write_lines(tmp_path / "r.jsonl", marked)) == "rudderstack"


def test_ray_takes_doxa_files_only(tmp_path: Path) -> None:
    out = cli("ingest", str(SAMPLES / "segment.jsonl"), "--ray", "--model", "openai/fake",
              "--base-url", "http://127.0.0.1:9", "--db", str(tmp_path / "x.db"))
    assert out.exit_code == 1
    assert "--ray reads doxa-format files only" in " ".join(out.output.split())


# -- malformed messages are refused naming the sender's field ----------------------------------


SEGMENT_OK = {"type": "track", "event": "Plan Chosen", "userId": "u1", "messageId": "m1",
              "timestamp": "2026-03-01T10:00:00Z"}


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"timestamp": None}, "timestamp", "is required (or originalTimestamp)"),
    ({"timestamp": "2026-03-01T10:00:00"}, "timestamp", "no time zone"),
    ({"userId": None}, "userId", "userId or anonymousId"),
    ({"userId": "acme/u1"}, "userId", "not a valid user id"),
    ({"messageId": "m 1"}, "messageId", "not a valid event id"),
    ({"event": None}, "event", "is required"),
    ({"type": "bogus"}, "type", "one of alias, group"),
    ({"properties": ["a"]}, "properties", "must be a JSON object"),
])
def test_a_bad_segment_call_names_its_field(tmp_path: Path, change: dict[str, Any],
                                            field: str, words: str) -> None:
    bad = {k: v for k, v in {**SEGMENT_OK, **change}.items() if v is not None}
    file = write_lines(tmp_path / "s.jsonl", SEGMENT_OK | {"messageId": "m0"}, bad)
    errors = [e for e in read(file, "segment") if isinstance(e, InvalidEventError)]
    assert len(errors) == 1
    assert (errors[0].line, errors[0].field) == (2, field)
    assert words in str(errors[0])


def test_a_group_call_needs_its_group_id() -> None:
    with pytest.raises(InvalidEventsError) as raised:
        read_payload({"batch": [{"type": "group", "userId": "u1",
                                 "timestamp": "2026-03-01T10:00:00Z"}]}, "segment")
    [error] = raised.value.errors
    assert (error.index, error.field) == (0, "groupId")


@pytest.mark.parametrize(("change", "field"), [
    ({"distinct_id": None}, "distinct_id"),
    ({"timestamp": None}, "timestamp"),
    ({"uuid": "has space"}, "uuid"),
    ({"properties": "{not json"}, "properties"),
])
def test_a_bad_posthog_event_names_its_field(change: dict[str, Any], field: str) -> None:
    good = {"event": "report exported", "distinct_id": "u1", "uuid": "e1",
            "timestamp": "2026-03-01T10:00:00Z", "properties": {"format": "csv"}}
    bad = {k: v for k, v in {**good, **change}.items() if v is not None}
    with pytest.raises(InvalidEventsError) as raised:
        read_payload([good | {"uuid": "e0"}, bad], "posthog")
    assert [(e.index, e.field) for e in raised.value.errors] == [(1, field)]


def test_a_bad_chat_message_names_its_place(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "c.jsonl", {
        "user": "u1", "created_at": "2026-03-01T10:00:00Z",
        "messages": [{"role": "user", "content": "hello there, I need help"},
                     {"content": "no role"}]})
    [error] = [e for e in read(file, "chat") if isinstance(e, InvalidEventError)]
    assert (error.line, error.field) == (1, "messages[1].role")


def test_a_chat_without_a_time_or_user_says_what_to_give(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "c.jsonl",
                       {"user": "u1", "messages": [{"role": "user", "content": "hi there"}]},
                       {"created": 1772000000, "messages": [{"role": "user", "content": "x"}]})
    errors = [e for e in read(file, "chat") if isinstance(e, InvalidEventError)]
    assert [(e.line, e.field) for e in errors] == [(1, "messages[0].timestamp"), (2, "user")]


def test_chat_keeps_spoken_turns_only_with_stable_ids(tmp_path: Path) -> None:
    conversation = {"user": "u1", "created": 1772000000, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "I prefer email"},
                                     {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "tool", "content": "{}"},
        {"role": "agent", "content": "Noted."}]}
    first = [e for e in read(write_lines(tmp_path / "a.jsonl", conversation), "chat")
             if isinstance(e, Event)]
    assert [(e.text, e.properties["role"]) for e in first] == [
        ("I prefer email", "user"), ("Noted.", "assistant")]
    grown = conversation | {"messages": [*conversation["messages"],
                                         {"role": "user", "content": "and weekly"}]}
    second = [e for e in read(write_lines(tmp_path / "b.jsonl", grown), "chat")
              if isinstance(e, Event)]
    assert [e.id for e in second[:2]] == [e.id for e in first]
    assert len({e.id for e in second}) == 3


def test_event_names_a_type_cannot_hold_are_cleaned_not_refused() -> None:
    [event] = read_payload({**SEGMENT_OK, "event": "Product Added (v2) — \"beta\""}, "segment")
    assert event.type == "Product Added v2 beta"


def test_a_redelivered_message_without_id_gets_the_same_id() -> None:
    call = {k: v for k, v in SEGMENT_OK.items() if k != "messageId"}
    first = read_payload(call, "segment")
    again = read_payload(json.loads(json.dumps(call)), "segment")
    assert first == again and first[0].id.startswith("segment-")


def test_a_jsonl_line_longer_than_a_read_ahead_is_still_one_line(tmp_path: Path) -> None:
    big = {"event": "report exported", "distinct_id": "u1", "uuid": "e1",
           "timestamp": "2026-03-01T10:00:00Z",
           "properties": {f"$prop_{i}": "x" * 40 for i in range(400)} | {"rows": 3}}
    file = write_lines(tmp_path / "p.jsonl", big, big | {"uuid": "e2"})
    assert detect_format(file) == "posthog"
    assert [e.id for e in read(file) if isinstance(e, Event)] == ["e1", "e2"]


def test_a_pretty_printed_batch_body_is_one_document(tmp_path: Path) -> None:
    file = tmp_path / "batch.json"
    file.write_text(json.dumps({"batch": [SEGMENT_OK, SEGMENT_OK | {"messageId": "m2"}]},
                               indent=2), encoding="utf-8")
    assert detect_format(file) == "segment"
    assert [e.id for e in read(file) if isinstance(e, Event)] == ["m1", "m2"]
