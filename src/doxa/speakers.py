"""Who authored an event: the user, an assistant or agent, the system, or nobody in particular.

A chat product logs both sides of a conversation, and only the user's side is evidence about
the user: an assistant that suggests podcasts has not shown that the user likes podcasts.
So every event is read for its author before it is weighed, rendered or cited. The author
comes from the event's own properties when the collector recorded one (`role`, `speaker`,
`author`, `sender`, as chat transcripts and CDP payloads name it), else from its type
(`bot_message`, `assistant_message`, `agent_reply`, `system_message`); behavioural events
(page views, clicks) have no author and are the user's actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Speaker = Literal["user", "assistant", "system"]

_ROLE_KEYS = ("role", "speaker", "author", "sender", "from")
_ROLES: dict[str, Speaker] = {
    # Only values no one uses for a job title: `role` is also where a signup puts "Engineer".
    "user": "user", "human": "user", "customer": "user",
    "assistant": "assistant", "bot": "assistant", "chatbot": "assistant", "ai": "assistant",
    "agent": "assistant", "system": "system", "tool": "system",
}
_TYPE_WORDS: tuple[tuple[str, Speaker], ...] = (
    ("assistant", "assistant"), ("bot", "assistant"), ("agent", "assistant"),
    ("system", "system"),
)


def speaker_of(event_type: str, properties: Mapping[str, Any]) -> Speaker | None:
    """The author of an event: its recorded role, else what its type says, else None."""
    for key in _ROLE_KEYS:
        value = properties.get(key)
        if isinstance(value, str) and (role := _ROLES.get(value.strip().casefold())):
            return role
    words = event_type.casefold().replace("-", "_").split("_")
    for word, speaker in _TYPE_WORDS:
        if word in words:
            return speaker
    return None


def is_users_own(event_type: str, properties: Mapping[str, Any]) -> bool:
    """Whether an event is the user's own words or actions (the only evidence about them)."""
    return by_the_user(speaker_of(event_type, properties))


def by_the_user(speaker: Speaker | None) -> bool:
    """Whether an author is the user: named so, or none recorded (the user's own actions)."""
    return speaker in (None, "user")
