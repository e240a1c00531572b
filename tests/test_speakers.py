"""Who wrote an event: recorded roles first, then the event type, else the user."""

from __future__ import annotations

import pytest

from doxa.speakers import is_users_own, speaker_of


@pytest.mark.parametrize(("event_type", "properties", "speaker"), [
    ("chat_message", {"role": "assistant"}, "assistant"),
    ("chat_message", {"role": "user"}, "user"),
    ("message", {"speaker": "Bot"}, "assistant"),
    ("message", {"author": "agent"}, "assistant"),
    ("message", {"sender": "system"}, "system"),
    ("bot_message", {}, "assistant"),
    ("assistant_message", {}, "assistant"),
    ("agent-reply", {}, "assistant"),
    ("system_message", {}, "system"),
    ("chat_message", {}, None),
    ("page_view", {"path": "/pricing"}, None),
    ("support_ticket", {}, None),
    # a job title under `role` is not an author
    ("signup", {"role": "Backend Engineer"}, None),
    ("signup", {"role": "support"}, None),
])
def test_the_author_of_an_event(event_type: str, properties: dict[str, str],
                                speaker: str | None) -> None:
    assert speaker_of(event_type, properties) == speaker
    assert is_users_own(event_type, properties) == (speaker in (None, "user"))
