"""Who wrote an event's text: the user, an assistant (or a human agent), or the system.

Only the user's own words and actions are evidence about them. In a chat transcript or a
support thread the other side's turns are context (what the user was answering), and an
assistant's suggestion ("many people love a quick stir-fry") quoted as if the user held it
is the commonest wrong record a small model writes. So every event carries its author
(`Event.speaker`): given by the collector, else read from the role it recorded in the
properties (`role`, as chat exports and CDP payloads name it, or `speaker`, `sender`,
`author`), else from its type (`assistant_message`, `bot_reply`, `system_message`,
`user_message`). Behavioural events (page views, clicks: no text) have no author.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Speaker = Literal["user", "assistant", "system"]
SPEAKERS: tuple[Speaker, ...] = ("user", "assistant", "system")

ROLE_KEYS = ("role", "speaker", "sender", "author")
"""Properties a collector records the author of a message under, most specific first."""

ROLE_NAMES: Mapping[str, Speaker] = {
    # Only words no one uses for a job title: `role` is also where a signup form keeps
    # "Engineer" or "admin", which say nothing about who wrote a message.
    "user": "user", "human": "user", "customer": "user", "visitor": "user",
    "assistant": "assistant", "agent": "assistant", "bot": "assistant",
    "chatbot": "assistant", "ai": "assistant", "model": "assistant",
    "system": "system", "tool": "system", "developer": "system",
}
"""Role words (case-folded) and the speaker each names; "agent" is an assistant, human or not."""

_TYPE_WORDS: Mapping[str, Speaker] = {
    "user": "user", "customer": "user", "assistant": "assistant", "bot": "assistant",
    "agent": "assistant", "ai": "assistant", "system": "system",
}


def speaker_named(value: object) -> Speaker | None:
    """The speaker a role word names ("Agent" → "assistant"), or None for any other value."""
    if not isinstance(value, str):
        return None
    return ROLE_NAMES.get(value.strip().casefold())


def speaker_of(event_type: str, properties: Mapping[str, Any]) -> Speaker | None:
    """The author of a message: the role its properties record, else what its type says,
    else None (a message of a type that names no author, such as `chat_message`)."""
    for key in ROLE_KEYS:
        if (speaker := speaker_named(properties.get(key))) is not None:
            return speaker
    for word in event_type.casefold().replace("-", "_").replace(".", "_").split("_"):
        if (speaker := _TYPE_WORDS.get(word)) is not None:
            return speaker
    return None


def is_users_own(speaker: Speaker | None) -> bool:
    """Whether text by this speaker is the user's own (no recorded author counts as the
    user's: a review, a survey answer or a support ticket is the user writing)."""
    return speaker in (None, "user")
