"""Chat transcripts in the OpenAI and Anthropic message shapes: one message, one event.

A conversation is an object with `messages` (each `{"role", "content"}`, content a string
or a list of parts: OpenAI's `text`/`input_text`/`output_text`, Anthropic's `text`); a
file holds one conversation, or a JSON array or JSONL of them (OpenAI's fine-tuning
layout). Who and when come from the conversation or the message:

    user        `user` (OpenAI's end-user id), `user_id`, or `metadata.user_id`
                (Anthropic's); else `doxa ingest --user USER`
    when        a message's `timestamp`/`created_at`/`created` (ISO 8601 or epoch
                seconds), else the conversation's; one of them is required
    ids         a message's own `id`, else `<conversation>:<0001>` by position, the
                conversation being its `id`/`conversation_id`/`thread_id` or, lacking
                one, a digest of its user, time and first message, so an export that
                grows by new messages keeps the ids of the old ones

Each event is type `message` with `text` = the message's text parts joined, and
properties `role` ("user", or "assistant" for assistant/agent/ai/model turns; "human"
is "user"), `conversation_id`, and `name` when the message has one.
System and developer prompts, tool calls and results, and parts that are not text
(images, audio) are not events: they are the product's instructions and machinery, not
something a person said, and a system prompt repeated in every conversation would be
read as the user's own words.

OpenAI's and Anthropic's SDKs build requests; neither reads a transcript back into
speaker turns with times, so this is doxa's own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from doxa.events.formats.mapping import (
    Aliases,
    as_object,
    each_of,
    epoch_or_text,
    field_error,
)

__all__ = ["ChatReader", "reader"]

SPOKEN_ROLES = {"user": "user", "human": "user", "assistant": "assistant",
                "agent": "assistant", "ai": "assistant", "model": "assistant"}
"""Roles whose messages become events, and the role each is recorded as; other roles
(system, developer, tool, function) do not become events."""
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


class ChatReader:
    """Reads OpenAI/Anthropic-style conversations into one event per spoken message."""

    name = "chat"

    def looks_like(self, document: object) -> bool:
        return any(True for _ in self.messages(document)) and all(
            _is_conversation(c) for _, c in self.messages(document))

    def messages(self, document: object) -> Iterator[tuple[int | None, object]]:
        """Conversations (a chat format's "message" is one whole conversation here)."""
        return each_of(document)

    def learn(self, message: object, aliases: Aliases) -> None:
        """Chat transcripts name one user each; there is nothing to link."""

    def convert(self, message: object, aliases: Aliases, default_user_id: str | None,
                ) -> list[tuple[dict[str, Any], Mapping[str, str]]]:
        if not isinstance(message, Mapping):
            raise field_error(None, "expected a JSON object with messages (a conversation), "
                              f"got {type(message).__name__}")
        turns = message.get("messages")
        if not isinstance(turns, list):
            raise field_error("messages", "is required: the conversation's list of messages")
        user_id = _user(message)
        if user_id is None and default_user_id is None:
            raise field_error("user", "is required: the conversation's end user (user, "
                              "user_id or metadata.user_id), or doxa ingest --user USER")
        started = _when(message)
        conversation = _conversation_id(message, user_id or default_user_id or "", started)
        events: list[tuple[dict[str, Any], Mapping[str, str]]] = []
        for i, turn in enumerate(turns):
            where = f"messages[{i}]"
            turn = as_object(turn, where)
            role = turn.get("role")
            if not isinstance(role, str) or not role.strip():
                raise field_error(f"{where}.role", "is required: who spoke (user, assistant)")
            text = _text(turn.get("content"), f"{where}.content")
            spoken = SPOKEN_ROLES.get(role.strip().lower())
            if spoken is None or not text:
                continue
            own_time = _when(turn)
            at = own_time if own_time is not None else started
            if at is None:
                raise field_error(f"{where}.timestamp", "is required: give the message or its "
                                  "conversation a time (timestamp, created_at or created)")
            properties: dict[str, Any] = {"role": spoken, "conversation_id": conversation}
            if isinstance(turn.get("name"), str) and turn["name"].strip():
                properties["name"] = turn["name"].strip()
            own_id = turn.get("id")
            raw = {"id": own_id if isinstance(own_id, str) and own_id.strip()
                   else f"{conversation}:{i:04d}",
                   "user_id": user_id, "type": "message", "timestamp": at, "text": text,
                   "properties": properties}
            events.append((raw, {"id": f"{where}.id", "user_id": "user",
                                 "timestamp": f"{where}.timestamp",
                                 "text": f"{where}.content", "properties": where}))
        return events


def _is_conversation(value: object) -> bool:
    if not isinstance(value, Mapping) or not isinstance(value.get("messages"), list):
        return False
    turns = value["messages"]
    return all(isinstance(m, Mapping) and "role" in m for m in turns)


def _user(conversation: Mapping[str, Any]) -> str | None:
    metadata = conversation.get("metadata")
    for value in (conversation.get("user"), conversation.get("user_id"),
                  metadata.get("user_id") if isinstance(metadata, Mapping) else None):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _when(item: Mapping[str, Any]) -> object | None:
    for name in ("timestamp", "created_at", "created"):
        if item.get(name) not in (None, ""):
            return epoch_or_text(item[name], naive_is_utc=False)
    return None


def _conversation_id(conversation: Mapping[str, Any], user_id: str, started: object) -> str:
    for name in ("id", "conversation_id", "thread_id"):
        value = conversation.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    turns = conversation.get("messages") or [{}]
    first = turns[0] if isinstance(turns[0], Mapping) else {}
    seed = json.dumps([user_id, str(started), first.get("role"), first.get("content")],
                      sort_keys=True, default=str)
    return "chat-" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def _text(content: object, field: str) -> str:
    """The message's words: a string, or its text parts joined by blank lines."""
    if content is None or isinstance(content, str):
        return (content or "").strip()
    if not isinstance(content, list):
        raise field_error(field, "must be a string or a list of content parts")
    texts = [part["text"] for part in content
             if isinstance(part, Mapping) and part.get("type") in _TEXT_PARTS
             and isinstance(part.get("text"), str) and part["text"].strip()]
    return "\n\n".join(t.strip() for t in texts)


reader = ChatReader()
