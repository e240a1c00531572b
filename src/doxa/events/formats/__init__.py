"""Readers for the formats collection tools already produce: Segment, RudderStack, PostHog
and OpenAI/Anthropic chat transcripts, beside doxa's own.

Every reader turns its format's messages into doxa `Event`s checked by the same rules as
any other input (doxa.events.parse), with errors that name the sender's own field. A file
is read twice: a first pass learns which anonymous ids an identify tied to which user (a
map of ids, not of events, so memory stays flat), the second maps every message, so a
visitor's events before sign-in belong to the user they turned out to be.

`detect_format` reads the start of a file and names its format, or refuses with the
candidates when the file could be more than one (or mixes them); `iter_events` streams a
file's events in a format; `read_payload` maps one HTTP body (the webhooks).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import Path

from doxa.errors import AmbiguousFormatError, ConfigError, InvalidEventError, InvalidEventsError
from doxa.events.formats import chat, native, posthog, rudderstack, segment
from doxa.events.formats.documents import Document, read_documents
from doxa.events.formats.mapping import Aliases, Reader, validated
from doxa.events.parse import Event, iter_file

__all__ = ["FORMATS", "detect_format", "iter_events", "read_payload", "reader_for"]

READERS: Mapping[str, Reader] = {
    "doxa": native.reader,
    "segment": segment.reader,
    "rudderstack": rudderstack.reader,
    "posthog": posthog.reader,
    "chat": chat.reader,
}
FORMATS: tuple[str, ...] = tuple(READERS)
"""The format names `doxa ingest --format` and `format=` take."""
DETECT_SAMPLE = 200
"""Documents detection reads from the start of a file before it decides."""


def reader_for(name: str) -> Reader:
    found = READERS.get(name)
    if found is None:
        raise ConfigError(f"unknown event format {name!r}; formats are {', '.join(FORMATS)}")
    return found


def detect_format(path: str | Path) -> str:
    """The format of the file's first documents: the one format they all look like.

    A file none of whose documents looks like a collection format is read as doxa's own
    (whose reader then says what is wrong with it). A document that looks like two formats,
    or documents of different formats in one file, raise `AmbiguousFormatError` naming the
    candidates and where they were seen."""
    seen: dict[str, str] = {}  # format -> where it was first seen
    for doc in islice(read_documents(path), DETECT_SAMPLE):
        if isinstance(doc, InvalidEventError):
            continue
        matches = [name for name, r in READERS.items() if r.looks_like(doc.value)]
        where = _where(doc)
        if len(matches) > 1:
            raise AmbiguousFormatError(str(path), matches, f"{where} looks like each of them")
        for name in matches:
            seen.setdefault(name, where)
    if len(seen) > 1:
        reason = "; ".join(f"{where} looks like {name}" for name, where in seen.items())
        raise AmbiguousFormatError(str(path), list(seen), f"it mixes formats: {reason}")
    return next(iter(seen), "doxa")


def iter_events(path: str | Path, fmt: str | None = None, *,
                default_user_id: str | None = None) -> Iterator[Event | InvalidEventError]:
    """Stream the file's events in `fmt` (None: detected), invalid ones as errors that name
    the line (or index) and the field as the format spells it."""
    name = fmt or detect_format(path)
    if name == "doxa":
        yield from iter_file(path, default_user_id=default_user_id)
        return
    reader = reader_for(name)
    aliases = Aliases()
    for doc in read_documents(path):
        if not isinstance(doc, InvalidEventError):
            for _, message in reader.messages(doc.value):
                reader.learn(message, aliases)
    for doc in read_documents(path):
        if isinstance(doc, InvalidEventError):
            yield doc
            continue
        for index, message in reader.messages(doc.value):
            for item in _events(reader, message, aliases, default_user_id):
                if isinstance(item, InvalidEventError):
                    yield _located(item, line=doc.line, index=_index(doc, index),
                                   source=str(path))
                else:
                    yield item


def read_payload(payload: object, fmt: str, *,
                 default_user_id: str | None = None) -> list[Event]:
    """One HTTP body's events (a single message, an array or a batch envelope), aliases
    learned within it; `InvalidEventsError` naming each bad message's index and field.
    Nothing is returned unless every message is valid: a sender retries a refused body
    whole, so half-accepting one would only confuse what was stored."""
    reader = reader_for(fmt)
    aliases = Aliases()
    messages = list(reader.messages(payload))
    for _, message in messages:
        reader.learn(message, aliases)
    events: dict[str, Event] = {}
    errors: list[InvalidEventError] = []
    for index, message in messages:
        for item in _events(reader, message, aliases, default_user_id):
            if isinstance(item, InvalidEventError):
                errors.append(_located(item, index=index))
                continue
            key = f"{item.user_id}\x00{item.id}"
            if key in events and events[key] != item:
                errors.append(_located(InvalidEventError(
                    f"id '{item.id}' is used twice for one user with different content",
                    field="id"), index=index))
            events.setdefault(key, item)
    if errors:
        raise InvalidEventsError(errors, source=f"the {fmt} payload")
    return list(events.values())


def _events(reader: Reader, message: object, aliases: Aliases,
            default_user_id: str | None) -> Iterator[Event | InvalidEventError]:
    try:
        mapped = reader.convert(message, aliases, default_user_id)
    except InvalidEventError as exc:
        yield exc
        return
    for raw, fields in mapped:
        try:
            yield validated(raw, fields, default_user_id=default_user_id)
        except InvalidEventError as exc:
            yield exc


def _located(error: InvalidEventError, *, line: int | None = None, index: int | None = None,
             source: str | None = None) -> InvalidEventError:
    return InvalidEventError(error.reason, field=error.field, line=line, index=index,
                             source=source, problems=error.problems)


def _index(doc: Document, inner: int | None) -> int | None:
    """The message's index: inside its line's batch, or in the file's array."""
    return inner if inner is not None else doc.index


def _where(doc: Document) -> str:
    if doc.line is not None:
        return f"line {doc.line}"
    if doc.index is not None:
        return f"item {doc.index}"
    return "the file"
