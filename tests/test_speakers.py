"""Who wrote an event, and how another speaker's turn reaches the prompt: as short context."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from doxa.errors import InvalidEventError
from doxa.events.parse import Event, parse_event
from doxa.model.records import UserModel
from doxa.prompts.render import PromptSet
from doxa.relevance import RelevanceConfig, make_batches, score

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def event(eid: str = "m1", type_: str = "message", text: str | None = "hello there",
          **extra: Any) -> Event:
    return Event(id=eid, user_id="u1", type=type_, timestamp=T0, text=text, **extra)


@pytest.mark.parametrize(("type_", "properties", "speaker"), [
    ("message", {"role": "assistant"}, "assistant"),
    ("message", {"role": "Agent"}, "assistant"),  # a human agent too: not the user
    ("message", {"role": "user"}, "user"),
    ("chat_message", {"speaker": "bot"}, "assistant"),
    ("message", {"sender": "system"}, "system"),
    ("assistant_message", {}, "assistant"),
    ("agent-reply", {}, "assistant"),
    ("bot_message", {}, "assistant"),
    ("system_message", {}, "system"),
    ("user_message", {}, "user"),
    ("chat_message", {}, None),
    ("support_ticket", {}, None),
    # `role` is also where a form keeps a job title: it names no author
    ("message", {"role": "Backend Engineer"}, None),
    ("message", {"role": "admin"}, None),
    # the recorded role wins over the type
    ("assistant_message", {"role": "user"}, "user"),
])
def test_the_speaker_is_read_from_the_recorded_role_then_the_type(
        type_: str, properties: dict[str, str], speaker: str | None) -> None:
    assert event(type_=type_, properties=properties).speaker == speaker


def test_a_given_speaker_is_kept_and_agent_is_read_as_assistant() -> None:
    assert event(speaker="agent", properties={"role": "user"}).speaker == "assistant"
    assert event(type_="assistant_message", speaker="user").speaker == "user"


def test_behaviour_has_no_speaker() -> None:
    assert event(type_="page_view", text=None, properties={"role": "assistant"}).speaker is None


def test_an_unknown_speaker_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidEventError) as err:
        parse_event({"id": "m1", "user_id": "u1", "type": "message", "text": "hi",
                     "timestamp": "2026-03-02T10:00:00Z", "speaker": "narrator"})
    assert err.value.field == "speaker"
    assert "must be one of user, assistant, system" in str(err.value)


def test_the_speaker_survives_a_round_trip_through_json() -> None:
    e = event(properties={"role": "assistant"})
    assert Event.model_validate_json(e.model_dump_json()).speaker == "assistant"


def test_another_speakers_turn_is_context_never_signal_on_its_own() -> None:
    config = RelevanceConfig()
    assert score(event(properties={"role": "assistant"}), config) == config.context_weight
    assert score(event(properties={"role": "user"}), config) == 1.0
    only_assistant = make_batches("u1", [event("a1", properties={"role": "assistant"},
                                               text="Would you like some podcasts?")])
    assert [b.has_signal for b in only_assistant] == [False]  # no call for it


def test_an_assistant_turn_is_cut_to_its_start_and_end_and_the_users_kept_whole() -> None:
    advice = ("Here is a plan for your week. " * 40) + "Which of these would you like to try?"
    reply = "I usually prefer in-person learning over online stuff. " * 20
    batch = make_batches("u1", [
        event("a1", text=advice, properties={"role": "assistant"}),
        event("u2", text=reply, properties={"role": "user"}),
    ])[0]
    shown = {item.ref: item.text or "" for item in batch.items}
    assert len(shown["a1"]) <= RelevanceConfig().max_context_chars + 10
    assert shown["a1"].startswith("Here is a plan") and " [...] " in shown["a1"]
    assert shown["a1"].endswith("Which of these would you like to try?")
    assert shown["u2"] == reply


def test_the_prompt_marks_the_other_speakers_turn() -> None:
    batch = make_batches("u1", [
        event("a1", type_="assistant_message", text="Many people love a quick stir-fry."),
        event("u2", text="the curry sounds good. fyi I don't eat meat"),
    ])[0]
    user = PromptSet().render(batch, UserModel(user_id="u1")).user
    # context without an id: nothing in the prompt invites citing it
    assert ('<event type="assistant_message">[assistant] Many people love a quick stir-fry.'
            '</event>') in user
    assert 'id="a1"' not in user
    assert ">the curry sounds good. fyi I don't eat meat</event>" in user
