"""Relevance: drop noise, collapse repeats (keeping every id), cut batches by count and tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from doxa.events.parse import Event
from doxa.relevance import RelevanceConfig, make_batches

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def ev(i: int, type_: str, text: str | None = None, **props: object) -> Event:
    return Event(id=f"e{i}", user_id="u1", type=type_, timestamp=T0 + timedelta(minutes=i),
                 text=text, properties=dict(props))


def test_heartbeats_are_dropped_and_identical_page_views_collapse_keeping_all_ids() -> None:
    events = [ev(1, "page_view", path="/pricing"), ev(2, "heartbeat"),
              ev(3, "page_view", path="/pricing"), ev(4, "scroll", depth=0.5),
              ev(5, "page_view", path="/pricing"), ev(6, "chat_message", "Is there SSO?")]
    [batch] = make_batches("u1", events)
    lines = [item.describe() if item.text is None else item.text for item in batch.items]
    assert lines == ["page_view path=/pricing ×3", "Is there SSO?"]
    assert batch.items[0].event_ids == ("e1", "e3", "e5")
    assert batch.rendered_ids == {"e1", "e3", "e5", "e6"}
    assert set(batch.events) == {f"e{i}" for i in range(1, 7)}  # noise is processed, not sent


def test_events_are_ordered_by_time_whatever_the_input_order() -> None:
    events = [ev(3, "chat_message", "third"), ev(1, "chat_message", "first")]
    [batch] = make_batches("u1", events)
    assert [item.text for item in batch.items] == ["first", "third"]


def test_messages_are_never_collapsed() -> None:
    events = [ev(1, "chat_message", "hi"), ev(2, "chat_message", "hi")]
    [batch] = make_batches("u1", events)
    assert len(batch.items) == 2


def test_batches_are_cut_by_event_count_and_by_tokens() -> None:
    events = [ev(i, "chat_message", f"message number {i}") for i in range(10)]
    by_count = make_batches("u1", events, RelevanceConfig(max_events=4))
    assert [len(b.items) for b in by_count] == [4, 4, 2]
    long = [ev(i, "chat_message", "word " * 200) for i in range(4)]
    by_tokens = make_batches("u1", long, RelevanceConfig(max_tokens=300))
    assert len(by_tokens) == 4


def test_a_batch_of_only_low_signal_events_has_nothing_to_send() -> None:
    events = [ev(1, "heartbeat"), ev(2, "scroll"), ev(3, "email_open", campaign="x")]
    [batch] = make_batches("u1", events)
    assert not batch.has_signal
    assert set(batch.events) == {"e1", "e2", "e3"}


def test_batch_ids_are_stable_and_weights_configurable() -> None:
    events = [ev(1, "custom_signal", "x")]
    assert make_batches("u1", events)[0].id == make_batches("u1", list(events))[0].id
    muted = RelevanceConfig(weights={"chat_message": 0.0, "custom_signal": 0.0})
    assert not make_batches("u1", events, muted)[0].has_signal


def test_long_text_is_truncated_before_it_is_sent() -> None:
    [batch] = make_batches("u1", [ev(1, "chat_message", "a" * 5000)],
                           RelevanceConfig(max_item_chars=100))
    assert batch.items[0].text is not None and len(batch.items[0].text) < 200
