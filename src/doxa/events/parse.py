"""Events in: parse and validate JSONL, JSON arrays or Python objects into `Event`s.

Invalid input is refused whole with every problem named by line (files) or index
(sequences) and field, unless the caller opts into skipping invalid events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from doxa.errors import InvalidEventError, InvalidEventsError
from doxa.events.fields import (
    MAX_TEXT_CHARS,
    check_event_id,
    check_label,
    check_properties,
    check_text,
    check_user_id,
)
from doxa.events.speakers import SPEAKERS, Speaker, speaker_named, speaker_of

__all__ = ["MAX_TEXT_CHARS", "Event", "LoadReport", "iter_file", "load_events", "load_file",
           "parse_event"]

JsonValue = Any
INPUT: Mapping[str, bool] = MappingProxyType({"input": True})
"""Validation context of events read in (files, sequences, HTTP bodies): the full rules."""


def _is_input(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("input"))


class Event(BaseModel):
    """One thing a user did or said, at a time-zone-aware moment.

    Every field reaches the LLM's prompt, so an event read in (`parse_event`, which every
    way into doxa goes through) is held to doxa.events.fields: character sets for ids, types
    and contexts, caller user ids, bounded and control-free text and properties, nesting
    checked without recursion. An event read back from a store is checked for shape only,
    so events stored under earlier rules (and a server tenant's `<tenant>/<user>` ids) load.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)
    timestamp: AwareDatetime
    text: str | None = None
    properties: dict[str, JsonValue] = Field(default_factory=dict)
    context: str | None = None
    speaker: Speaker | None = None
    """Who wrote `text` (doxa.events.speakers): "user", "assistant" ("agent" is read as
    one) or "system"; when not given, read from `properties["role"]` or the type. None for
    behavioural events and messages of no recorded author, which count as the user's."""

    @model_validator(mode="before")
    @classmethod
    def _derive_speaker(cls, data: Any) -> Any:
        """A message's author, when not given, from its recorded role or its type; an event
        without text (behaviour) has none."""
        if not isinstance(data, Mapping) or data.get("speaker") is not None:
            return data
        text, properties = data.get("text"), data.get("properties")
        if not isinstance(text, str) or not text.strip():
            return data
        speaker = speaker_of(str(data.get("type") or ""),
                             properties if isinstance(properties, Mapping) else {})
        return data if speaker is None else {**data, "speaker": speaker}

    @field_validator("speaker", mode="before")
    @classmethod
    def _known_speaker(cls, value: Any) -> Any:
        if value is None:
            return None
        speaker = speaker_named(value)
        if speaker is None:
            raise ValueError(f"must be one of {', '.join(SPEAKERS)} (or agent, read as "
                             f"assistant), got {str(value)[:40]!r}")
        return speaker

    @field_validator("properties", mode="before")
    @classmethod
    def _bounded_properties(cls, value: Any, info: ValidationInfo) -> Any:
        return check_properties(value) if _is_input(info) else value

    @field_validator("id", "user_id", "type")
    @classmethod
    def _no_surrounding_space(cls, value: str, info: ValidationInfo) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with white space")
        if not _is_input(info):
            return value
        check = {"id": check_event_id, "user_id": check_user_id}.get(info.field_name or "",
                                                                   check_label)
        return check(value)

    @field_validator("context")
    @classmethod
    def _context_label(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_label(value) if value is not None and _is_input(info) else value

    @field_validator("text")
    @classmethod
    def _bounded_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"is {len(value)} characters; the limit is {MAX_TEXT_CHARS}")
        return check_text(value) if _is_input(info) else value


@dataclass
class LoadReport:
    """What a lenient load accepted and what it skipped, and why."""

    events: list[Event] = field(default_factory=list)
    skipped: list[InvalidEventError] = field(default_factory=list)


def _problems(exc: ValidationError) -> list[tuple[str | None, str]]:
    """Every (field, message) pydantic found, worded for someone fixing an events file."""
    problems: list[tuple[str | None, str]] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or None
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "timezone_aware":
            message = "timestamp has no time zone; give an offset such as 'Z' or '+02:00'"
        elif err["type"] == "missing" and loc == "user_id":
            message = ("is required: give each event a user_id, or name the user for all "
                       "of them (doxa ingest --user USER)")
        elif err["type"] == "missing":
            message = "is required"
        problems.append((loc, message))
    return problems


def parse_event(
    raw: object,
    *,
    default_user_id: str | None = None,
    line: int | None = None,
    index: int | None = None,
    source: str | None = None,
) -> Event:
    """Validate one raw event by the full input rules (an `Event` too: it may have been built
    without them); raise `InvalidEventError` naming where and which field."""
    if isinstance(raw, Event):
        raw = raw.model_dump()
    elif not isinstance(raw, Mapping):
        raise InvalidEventError(
            f"expected a JSON object, got {type(raw).__name__}",
            line=line, index=index, source=source,
        )
    data = dict(raw)
    if default_user_id is not None and data.get("user_id") in (None, ""):
        data["user_id"] = default_user_id
    try:
        return Event.model_validate(data, context=INPUT)
    except ValidationError as exc:
        problems = _problems(exc)
        raise InvalidEventError(
            problems[0][1], field=problems[0][0], line=line, index=index, source=source,
            problems=problems,
        ) from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, object | InvalidEventError]]:
    """Each non-blank line of a JSONL file, decoded, with its 1-based number; a line that is
    not UTF-8 or not JSON comes as an `InvalidEventError` (UTF-8 errors end the file)."""
    with path.open("r", encoding="utf-8", errors="strict") as fh:
        lineno = 0
        while True:
            try:
                text = fh.readline()
            except UnicodeDecodeError as exc:
                yield lineno + 1, InvalidEventError(
                    f"not UTF-8 ({exc.reason})", line=lineno + 1, source=str(path)
                )
                return
            if not text:
                return
            lineno += 1
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as exc:
                yield lineno, InvalidEventError(
                    f"not valid JSON ({exc.msg} at column {exc.colno})",
                    line=lineno, source=str(path),
                )
            except RecursionError:  # nesting deeper than the parser can follow
                yield lineno, InvalidEventError(
                    "nested too deeply to read", line=lineno, source=str(path))


def iter_file(
    path: str | Path, *, default_user_id: str | None = None
) -> Iterator[Event | InvalidEventError]:
    """Stream a JSONL file (or read a JSON array file) one event at a time."""
    p = Path(path)
    if not p.exists():
        raise InvalidEventError("file does not exist", source=str(p))
    with p.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"["):
        try:
            items = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            yield InvalidEventError(f"not a valid JSON array ({exc})", source=str(p))
            return
        for i, raw in enumerate(items):
            try:
                yield parse_event(raw, default_user_id=default_user_id, index=i, source=str(p))
            except InvalidEventError as err:
                yield err
        return
    for lineno, raw in iter_jsonl(p):
        if isinstance(raw, InvalidEventError):
            yield raw
            continue
        try:
            yield parse_event(raw, default_user_id=default_user_id, line=lineno, source=str(p))
        except InvalidEventError as err:
            yield err


def _collect(
    items: Iterable[Event | InvalidEventError], *, skip_invalid: bool, source: str | None
) -> LoadReport:
    report = LoadReport()
    seen: dict[tuple[str, str], Event] = {}
    for item in items:
        if isinstance(item, InvalidEventError):
            report.skipped.append(item)
            continue
        key = (item.user_id, item.id)
        previous = seen.get(key)
        if previous is not None:
            if previous != item:
                report.skipped.append(
                    InvalidEventError(
                        f"event id '{item.id}' is used twice for user '{item.user_id}' "
                        "with different content",
                        field="id", source=source,
                    )
                )
            continue
        seen[key] = item
        report.events.append(item)
    if report.skipped and not skip_invalid:
        raise InvalidEventsError(report.skipped, source=source)
    return report


def load_file(
    path: str | Path, *, skip_invalid: bool = False, default_user_id: str | None = None
) -> LoadReport:
    """Load every event of a JSONL or JSON-array file; refuse it whole if any line is invalid."""
    return _collect(
        iter_file(path, default_user_id=default_user_id),
        skip_invalid=skip_invalid, source=str(path),
    )


def load_events(
    raw: Iterable[object], *, skip_invalid: bool = False, default_user_id: str | None = None
) -> LoadReport:
    """Validate Python objects (dicts or `Event`s); errors name the 0-based index."""
    if isinstance(raw, str | bytes | Mapping):  # iterating it would make "events" of its parts
        raise InvalidEventError(
            f"events must be a list (or other iterable) of events, each a dict or an Event; "
            f"got a {type(raw).__name__}" + (": wrap a single event in a list"
                                               if isinstance(raw, Mapping) else ""))

    def gen() -> Iterator[Event | InvalidEventError]:
        for i, item in enumerate(raw):
            try:
                yield parse_event(item, default_user_id=default_user_id, index=i)
            except InvalidEventError as err:
                yield err

    return _collect(gen(), skip_invalid=skip_invalid, source=None)
