"""What every format reader shares: the `Reader` protocol, identity aliases, stable ids,
labels, times, and validation reported in the format's own field names.

A reader maps one message of its format (a Segment call, a PostHog event, a chat
conversation) to doxa event dicts; `Event` validation then applies doxa's full input rules.
An error must name the field the way the sender wrote it (`messageId`, `distinct_id`,
`messages[2].content`), not doxa's, or nobody can find what to fix: `validated` renames.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from doxa.errors import InvalidEventError
from doxa.events.parse import Event, parse_event

__all__ = ["Aliases", "Reader", "as_label", "as_object", "each_of", "epoch_or_text",
           "field_error", "stable_id", "validated"]

_NOT_LABEL = re.compile(r"[^\w .:/$@#+-]+")
_SPACES = re.compile(r"\s+")
_MAX_LABEL = 100
_ALIAS_HOPS = 32


class Aliases:
    """Which id stands for which user: an anonymous id that a later identify (or alias)
    tied to a user id resolves to that user id, so a visitor's events before signing in
    are evidence about the same person as those after. Links are followed to the end of a
    chain (a bounded number of hops, so a cycle cannot hang a read)."""

    def __init__(self) -> None:
        self._to: dict[str, str] = {}

    def link(self, alias: str, user_id: str) -> None:
        if alias and user_id and alias != user_id:
            self._to.setdefault(alias, user_id)

    def resolve(self, some_id: str) -> str:
        current = some_id
        for _ in range(_ALIAS_HOPS):
            nxt = self._to.get(current)
            if nxt is None or nxt == some_id:
                return current
            current = nxt
        return current


class Reader(Protocol):
    """One collection format. `messages` unwraps a document (a batch envelope, an array)
    into the format's messages with their index inside it; `learn` reads identity links
    from a message on a first pass; `convert` maps a message to doxa event dicts."""

    @property
    def name(self) -> str: ...

    def looks_like(self, document: object) -> bool: ...

    def messages(self, document: object) -> Iterator[tuple[int | None, object]]: ...

    def learn(self, message: object, aliases: Aliases) -> None: ...

    def convert(self, message: object, aliases: Aliases,
                default_user_id: str | None) -> list[tuple[dict[str, Any], Mapping[str, str]]]:
        """Each event as (doxa event dict, {doxa field: the format's name for it})."""


def each_of(document: object) -> Iterator[tuple[int | None, object]]:
    """A JSON array's items with their index, or the one document as it is."""
    if isinstance(document, list):
        yield from enumerate(document)
    else:
        yield None, document


def field_error(field: str | None, message: str) -> InvalidEventError:
    return InvalidEventError(message, field=field)


def as_object(value: object, field: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object (absent is empty); an error naming `field` if not."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise field_error(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def stable_id(prefix: str, message: Mapping[str, Any]) -> str:
    """An id for a message its sender gave none: a digest of its content, so the same
    message sent again gets the same id and is stored once."""
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), default=str)
    return f"{prefix}-{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


def as_label(name: object, field: str) -> str:
    """An event name as a doxa type: characters a type may not hold (brackets, quotes,
    punctuation) become a space, runs of space one, cut to 100 characters. "Product Added
    (v2)" is still a real event name; refusing it would refuse the sender's whole export."""
    if isinstance(name, int | float) and not isinstance(name, bool):
        name = str(name)
    if not isinstance(name, str) or not name.strip():
        raise field_error(field, "is required: the event's name")
    cleaned = _SPACES.sub(" ", _NOT_LABEL.sub(" ", name)).strip()[:_MAX_LABEL].strip()
    if not cleaned or not re.match(r"[\w$]", cleaned):
        raise field_error(field, f"{name[:60]!r} holds no letter or digit to name the event by")
    return cleaned


def epoch_or_text(value: object, *, naive_is_utc: bool) -> object:
    """A time as the sender wrote it: epoch seconds (or milliseconds) become an aware UTC
    datetime; text is left for `Event` to parse, except that a time without a zone is
    read as UTC where the format says its times are UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if naive_is_utc and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def validated(raw: dict[str, Any], fields: Mapping[str, str], *,
              default_user_id: str | None = None) -> Event:
    """The event by doxa's input rules; an error names each field as the format does."""
    try:
        return parse_event(raw, default_user_id=default_user_id)
    except InvalidEventError as exc:
        problems = [(_renamed(field, fields), message) for field, message in exc.problems]
        raise InvalidEventError(problems[0][1], field=problems[0][0],
                                problems=problems) from None


def _renamed(field: str | None, fields: Mapping[str, str]) -> str | None:
    if field is None:
        return None
    head, dot, rest = field.partition(".")
    name = fields.get(head, head)
    return f"{name}{dot}{rest}" if dot else name
