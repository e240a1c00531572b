"""The Segment Spec: track, page, screen, identify and group calls (alias links identities).

Mapping, call by call (every call: `messageId` -> id, `timestamp` or else
`originalTimestamp` -> timestamp, the user below):

    track     type = the `event` name; properties = `properties`, plus `context.page`
              as `page` (where it happened), when the call has one
    page      type `page_view`; properties = `context.page`, overlaid by `properties`,
              plus the page's `name` and `category`
    screen    type `screen_view`; properties = `properties` plus the screen's `name`
    identify  type `identify`; properties = the user's `traits`
    group     type `group`; properties = `group_id` and the group's `traits`
    alias     no event: `previousId` becomes another name of `userId`

The user is `userId`, or else `anonymousId`; either belongs to the user an `identify` (with
both ids) or an `alias` (`previousId` -> `userId`) in the same input tied it to, so a
visitor's events before sign-in, or under a retired id, are evidence about the same person.
Device, library, IP and user-agent context is dropped: it says nothing about what the user
wants and much about who they are. A message without `messageId` (the
webhook documentation's own examples have none) gets an id digested from its content, so
a redelivery is still stored once.

No maintained Python package parses the Spec from the receiving side (Segment's and
RudderStack's Python libraries send events; they do not read them), so this is doxa's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from doxa.events.formats.mapping import (
    Aliases,
    as_label,
    as_object,
    each_of,
    field_error,
    stable_id,
)

__all__ = ["CALLS", "SpecReader", "reader"]

CALLS = frozenset({"track", "page", "screen", "identify", "group", "alias"})
_PAGE_FIELDS = ("path", "url", "title", "referrer", "search")
_FIELDS = {"id": "messageId", "user_id": "userId", "timestamp": "timestamp"}


@dataclass(frozen=True)
class SpecReader:
    """A reader of Segment-Spec messages; RudderStack speaks the same spec."""

    name: str
    id_prefix: str
    by_rudderstack: bool
    """Which side of the one telling mark (a RudderStack id or library) this format is."""

    def looks_like(self, document: object) -> bool:
        messages = [m for _, m in self.messages(document)]
        return bool(messages) and all(
            _is_spec_message(m) and _rudderstack_marked(m) == self.by_rudderstack
            for m in messages)

    def messages(self, document: object) -> Iterator[tuple[int | None, object]]:
        """A single call, a JSON array of calls (a batching webhook), or an HTTP API
        `{"batch": [...]}` body whose shared `context` each call inherits."""
        if isinstance(document, Mapping) and isinstance(document.get("batch"), list):
            shared = document.get("context")
            for i, message in enumerate(document["batch"]):
                own = message.get("context") if isinstance(message, Mapping) else None
                if isinstance(shared, Mapping) and isinstance(own, Mapping | None):
                    message = {**message, "context": {**shared, **(own or {})}}
                yield i, message
            return
        yield from each_of(document)

    def learn(self, message: object, aliases: Aliases) -> None:
        if not isinstance(message, Mapping):
            return
        user_id = _id_text(message.get("userId"))
        if user_id is None:
            return
        if message.get("type") == "alias":
            previous = _id_text(message.get("previousId"))
            if previous is not None:
                aliases.link(previous, user_id)
        anonymous = _id_text(message.get("anonymousId"))
        if anonymous is not None and message.get("type") == "identify":
            aliases.link(anonymous, user_id)

    def convert(self, message: object, aliases: Aliases, default_user_id: str | None,
                ) -> list[tuple[dict[str, Any], Mapping[str, str]]]:
        if not isinstance(message, Mapping):
            raise field_error(None, f"expected a JSON object (a {self.name} call), got "
                              f"{type(message).__name__}")
        call = message.get("type")
        if not isinstance(call, str) or call not in CALLS:
            raise field_error("type", f"is {call!r}; a {self.name} call's type is one of "
                              + ", ".join(sorted(CALLS)))
        if call == "alias":
            return []
        fields = dict(_FIELDS)
        raw: dict[str, Any] = {
            "id": _id_text(message.get("messageId")) or stable_id(self.id_prefix, message),
            "user_id": self._user(message, aliases, default_user_id, fields),
            "timestamp": _time(message, fields),
        }
        raw["type"], raw["properties"], fields["properties"] = self._shape(str(call), message)
        fields["type"] = "event" if call == "track" else "type"
        return [(raw, fields)]

    def _user(self, message: Mapping[str, Any], aliases: Aliases,
              default_user_id: str | None, fields: dict[str, str]) -> str | None:
        user_id = _id_text(message.get("userId"))
        if user_id is not None:
            return aliases.resolve(user_id)
        anonymous = _id_text(message.get("anonymousId"))
        if anonymous is not None:
            fields["user_id"] = "anonymousId"
            return aliases.resolve(anonymous)
        if default_user_id is None:
            raise field_error("userId", "is required: a call names its user by userId or "
                              "anonymousId (or give the user: doxa ingest --user USER)")
        return None

    def _shape(self, call: str, message: Mapping[str, Any],
               ) -> tuple[str, dict[str, Any], str]:
        """(doxa type, properties, the field the properties came from)."""
        properties = dict(as_object(message.get("properties"), "properties"))
        context = as_object(message.get("context"), "context")
        page = {k: v for k, v in as_object(context.get("page"), "context.page").items()
                if k in _PAGE_FIELDS and v not in (None, "")}
        if call == "track":
            if page and "page" not in properties:
                properties["page"] = page
            return as_label(message.get("event"), "event"), properties, "properties"
        if call == "page":
            named = {k: message[k] for k in ("name", "category") if message.get(k)}
            return "page_view", {**page, **properties, **named}, "properties"
        if call == "screen":
            named = {"name": message["name"]} if message.get("name") else {}
            return "screen_view", {**properties, **named}, "properties"
        traits = message.get("traits")
        source = "traits"
        if traits is None and isinstance(context.get("traits"), Mapping):
            traits, source = context["traits"], "context.traits"
        traits = dict(as_object(traits, source))
        if call == "identify":
            return "identify", traits, source
        group_id = _id_text(message.get("groupId"))
        if group_id is None:
            raise field_error("groupId", "is required for a group call")
        return "group", {"group_id": group_id, **traits}, source


def _is_spec_message(message: object) -> TypeGuard[Mapping[str, Any]]:
    return (isinstance(message, Mapping) and isinstance(message.get("type"), str)
            and message["type"] in CALLS
            and any(k in message for k in ("userId", "anonymousId", "messageId")))


def _rudderstack_marked(message: Mapping[str, Any]) -> bool:
    """RudderStack's SDKs and server stamp `rudderId` and name their library RudderLabs."""
    if "rudderId" in message:
        return True
    context = message.get("context")
    library = context.get("library") if isinstance(context, Mapping) else None
    name = library.get("name") if isinstance(library, Mapping) else None
    return isinstance(name, str) and "rudder" in name.lower()


def _id_text(value: object) -> str | None:
    """An id as text: the Spec allows numbers (a database id); blank is absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _time(message: Mapping[str, Any], fields: dict[str, str]) -> object:
    for name in ("timestamp", "originalTimestamp"):
        if message.get(name) not in (None, ""):
            fields["timestamp"] = name
            return message[name]
    raise field_error("timestamp", "is required (or originalTimestamp): when the call "
                      "happened, ISO 8601 with a time zone")


reader = SpecReader(name="segment", id_prefix="segment", by_rudderstack=False)
