"""Quote repair: each kind of near-miss becomes the event's exact span; nothing else does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doxa.llm.quotes import MIN_SIMILARITY, needs_repair, repair, similarity

TEXT = ("I usually prefer in-person learning over online stuff - can't stand those digital "
        "courses, honestly. Anyway, what time does the library open on Sundays?")


@pytest.mark.parametrize(("kind", "quote", "span"), [
    ("case", "i USUALLY prefer in-person LEARNING", "I usually prefer in-person learning"),
    ("white space", "I usually  prefer\nin-person learning", "I usually prefer in-person learning"),
    ("punctuation", "can't stand those digital courses!", "can't stand those digital courses"),
    ("inner punctuation", "online stuff, can't stand those digital courses",
     "online stuff - can't stand those digital courses"),
    ("quote marks", "can’t stand those digital courses", "can't stand those digital courses"),
    ("ellipsis", "I usually prefer in-person learning … can't stand those digital courses",
     "I usually prefer in-person learning over online stuff - can't stand those digital "
     "courses"),
    ("ellipsis, one part missing", "I usually prefer in-person learning ... on Mondays",
     "I usually prefer in-person learning"),
    ("truncated", "prefer in-person learning over onl", "prefer in-person learning over online"),
    ("stopped early", "I usually prefer in-person learning over online",
     None),  # verbatim already: nothing to repair
    ("slight paraphrase", "I usually prefer in-person learning over online courses",
     "I usually prefer in-person learning over online stuff"),
])
def test_each_kind_of_near_miss_is_replaced_by_the_events_own_words(
        kind: str, quote: str, span: str | None) -> None:
    if span is None:
        assert not needs_repair(quote, TEXT), kind
        return
    assert needs_repair(quote, TEXT), kind
    repaired = repair(quote, TEXT)
    assert repaired == span, kind
    assert repaired in TEXT


@pytest.mark.parametrize("quote", [
    "I love online courses and video tutorials",  # what the event does not say
    "the library opens at nine on weekdays",  # shares words, says something else
    "prefers podcasts",
    "...",
    "",
    "   ",
])
def test_a_quote_of_something_else_is_not_repaired(quote: str) -> None:
    assert repair(quote, TEXT) is None


def test_nothing_is_repaired_out_of_an_event_without_words() -> None:
    assert repair("I love it", "👍 👍") is None


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80), st.text(max_size=200))
def test_a_repaired_quote_is_always_verbatim_in_the_event(
        quote: str, text: str) -> None:
    repaired = repair(quote, text)
    assert repaired is None or repaired in text


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_span_of_another_event_is_never_repaired_into_this_one(data: st.DataObject) -> None:
    """Words drawn from one vocabulary, a quote from a disjoint one: never a repair."""
    own = data.draw(st.lists(st.sampled_from(["vegan", "budget", "morning", "quiet", "trains",
                                              "weekly", "email", "spicy"]),
                             min_size=1, max_size=30))
    other = data.draw(st.lists(st.sampled_from(["podcast", "luxury", "nightly", "crowds",
                                                "flights", "phone"]), min_size=1, max_size=8))
    assert repair(" ".join(other), " ".join(own)) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["I", "really", "prefer", "quiet", "trains", "over", "loud",
                                 "buses", "at", "night", "because", "sleep"]),
                min_size=3, max_size=40), st.data())
def test_a_changed_case_span_of_the_event_is_repaired_to_a_span_as_alike(
        words: list[str], data: st.DataObject) -> None:
    text = " ".join(words)
    start = data.draw(st.integers(0, len(words) - 1))
    end = data.draw(st.integers(start + 1, len(words)))
    quote = " ".join(words[start:end]).upper()
    repaired = repair(quote, text)
    assert repaired is not None and repaired in text
    assert similarity(repaired, quote) >= MIN_SIMILARITY
