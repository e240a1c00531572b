"""PostHog events: what the capture API takes, what its webhook destination sends, and what
its exports hold.

Accepted shapes: one event (`{"event": "...", "distinct_id": "...", "properties": {...}}`,
`distinct_id` also inside `properties` as posthog-js sends it), a capture batch
(`{"batch": [...]}`) or a JSON array of events, the webhook destination's default body
(`{"event": {...}, "person": {...}}`), and export rows (`uuid`, `event`, `distinct_id`,
`timestamp`, `properties` as an object or as JSON text, `set`/`set_once`).

Mapping: `uuid` -> id (else an id digested from the content), `distinct_id` -> user,
`timestamp` -> timestamp (PostHog's times are UTC, so one without a zone is read as UTC;
`properties.$time` epoch seconds when there is no `timestamp`), and the event name:

    $pageview -> page_view      $screen -> screen_view     $pageleave -> page_leave
    $identify, $set -> identify (properties = the `$set_once` and `$set` person properties)
    $groupidentify -> group     $autocapture -> click, form_submit or input_change
    $create_alias -> no event (the two ids become one user)
    any other name -> itself, with characters a type may not hold replaced by spaces

Properties keep what the product sent (keys without `$`) and, of PostHog's own `$`
properties, the ones that say what the user looked at: `$current_url` as `url`,
`$pathname` as `path`, `$referrer` as `referrer`, `$screen_name` as `screen`, `$el_text`
as `element_text`. Browser, device, geo-IP, library and session properties are dropped.

Identity: an `$identify` event's `$anon_distinct_id` (and a `$create_alias`'s `alias`)
becomes another name of its `distinct_id`, so anonymous events before sign-in in the same
input belong to the identified user.

PostHog's Python package is its client (it sends events); no maintained package reads
events on the receiving side, so this is doxa's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from doxa.errors import InvalidEventError
from doxa.events.formats.mapping import (
    Aliases,
    as_label,
    as_object,
    epoch_or_text,
    field_error,
    stable_id,
)

__all__ = ["PostHogReader", "reader"]

_TYPES = {"$pageview": "page_view", "$screen": "screen_view", "$pageleave": "page_leave",
          "$identify": "identify", "$set": "identify", "$groupidentify": "group"}
_AUTOCAPTURE = {"click": "click", "submit": "form_submit", "change": "input_change"}
_KEPT = {"$current_url": "url", "$pathname": "path", "$referrer": "referrer",
         "$screen_name": "screen", "$el_text": "element_text"}
_DROPPED = frozenset({"distinct_id", "token", "api_key"})
_FIELDS = {"id": "uuid", "user_id": "distinct_id", "type": "event", "timestamp": "timestamp"}


class PostHogReader:
    """Reads PostHog events in any of the shapes above."""

    name = "posthog"

    def looks_like(self, document: object) -> bool:
        messages = [m for _, m in self.messages(document)]
        return bool(messages) and all(_is_posthog_event(m) for m in messages)

    def messages(self, document: object) -> Iterator[tuple[int | None, object]]:
        if isinstance(document, list):
            items: list[object] | None = document
        elif isinstance(document, Mapping) and isinstance(document.get("batch"), list):
            items = document["batch"]
        else:
            items = None
        if items is None:
            yield None, _unwrapped(document)
        else:
            yield from ((i, _unwrapped(item)) for i, item in enumerate(items))

    def learn(self, message: object, aliases: Aliases) -> None:
        if not isinstance(message, Mapping):
            return
        try:
            properties = _properties(message)
        except InvalidEventError:
            return  # convert() reports it on the second pass
        user_id = _distinct_id(message, properties)
        if user_id is None:
            return
        linked = {"$identify": "$anon_distinct_id", "$create_alias": "alias"}.get(
            str(message.get("event")))
        other = properties.get(linked) if linked else None
        if isinstance(other, str | int) and not isinstance(other, bool) and str(other):
            aliases.link(str(other), user_id)

    def convert(self, message: object, aliases: Aliases, default_user_id: str | None,
                ) -> list[tuple[dict[str, Any], Mapping[str, str]]]:
        if not isinstance(message, Mapping):
            raise field_error(None, "expected a JSON object (a PostHog event), got "
                              f"{type(message).__name__}")
        name = message.get("event")
        if name == "$create_alias":
            return []
        properties = _properties(message)
        fields = dict(_FIELDS)
        user_id = _distinct_id(message, properties)
        if user_id is None and default_user_id is None:
            raise field_error("distinct_id", "is required: the id of the person the event is "
                              "about (or give the user: doxa ingest --user USER)")
        event_type = _type(name, properties)
        raw: dict[str, Any] = {
            "id": _text(message.get("uuid")) or stable_id("posthog", message),
            "user_id": aliases.resolve(user_id) if user_id is not None else None,
            "type": event_type,
            "timestamp": _time(message, properties, fields),
            "properties": (_person(message, properties) if event_type == "identify"
                           else _kept(properties)),
        }
        if event_type == "identify":
            fields["properties"] = "properties.$set"
        return [(raw, fields)]


def _unwrapped(item: object) -> object:
    """The event of the webhook destination's `{"event": {...}, "person": {...}}` body."""
    if isinstance(item, Mapping) and isinstance(item.get("event"), Mapping):
        return item["event"]
    return item


def _is_posthog_event(message: object) -> bool:
    if not isinstance(message, Mapping) or not isinstance(message.get("event"), str):
        return False
    properties = message.get("properties")
    return ("distinct_id" in message or "uuid" in message
            or (isinstance(properties, Mapping) and "distinct_id" in properties))


def _properties(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """`properties`, which exports may hold as JSON text."""
    value = message.get("properties")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise field_error("properties", "is text that is not a JSON object") from None
    return as_object(value, "properties")


def _distinct_id(message: Mapping[str, Any], properties: Mapping[str, Any]) -> str | None:
    for value in (message.get("distinct_id"), properties.get("distinct_id")):
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _type(name: object, properties: Mapping[str, Any]) -> str:
    if isinstance(name, str) and name in _TYPES:
        return _TYPES[name]
    if name == "$autocapture":
        return _AUTOCAPTURE.get(str(properties.get("$event_type")), "$autocapture")
    return as_label(name, "event")


def _time(message: Mapping[str, Any], properties: Mapping[str, Any],
          fields: dict[str, str]) -> object:
    if message.get("timestamp") not in (None, ""):
        return epoch_or_text(message["timestamp"], naive_is_utc=True)
    if isinstance(properties.get("$time"), int | float):
        fields["timestamp"] = "properties.$time"
        return epoch_or_text(properties["$time"], naive_is_utc=True)
    raise field_error("timestamp", "is required: when the event happened (ISO 8601)")


def _kept(properties: Mapping[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in properties.items()
            if not k.startswith("$") and k not in _DROPPED}
    for posthog_name, name in _KEPT.items():
        if properties.get(posthog_name) not in (None, "") and name not in kept:
            kept[name] = properties[posthog_name]
    return kept


def _person(message: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """The person properties an identify sets: `$set_once` under `$set` (a later `$set`
    wins), from the event's properties or an export row's `set`/`set_once` columns."""
    merged: dict[str, Any] = {}
    for source, field in ((properties.get("$set_once"), "properties.$set_once"),
                          (message.get("set_once"), "set_once"),
                          (properties.get("$set"), "properties.$set"),
                          (message.get("set"), "set")):
        if isinstance(source, str):
            try:
                source = json.loads(source)
            except json.JSONDecodeError:
                raise field_error(field, "is text that is not a JSON object") from None
        merged.update(as_object(source, field))
    return merged


reader = PostHogReader()
