"""Quote repair: near-misses become the event's exact span; anything else stays refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doxa.quotes import is_verbatim, repair

TEXT = ("I usually prefer in-person learning over online stuff - can't stand those digital "
        "courses, honestly. Anyway, what time does the library open?")


@pytest.mark.parametrize(("quote", "span"), [
    # case and white space
    ("i USUALLY prefer   in-person learning", "I usually prefer in-person learning"),
    # punctuation and typographic quotes
    ("can’t stand those digital courses!", "can't stand those digital courses"),
    # an ellipsis where the model skipped words: its longest part is matched
    ("I usually prefer in-person learning ... honestly", "I usually prefer in-person learning"),
    # stopped a few words early
    ("prefer in-person learning over onl", "prefer in-person learning over online"),
    # one word swapped (a light paraphrase)
    ("I usually prefer in-person learning over online courses",
     "I usually prefer in-person learning over online stuff"),
])
def test_a_near_miss_is_replaced_by_the_events_own_words(quote: str, span: str) -> None:
    assert not is_verbatim(quote, TEXT) or quote.strip() != span
    repaired = repair(quote, TEXT)
    assert repaired == span
    assert repaired in TEXT


@pytest.mark.parametrize("quote", [
    "I love online courses and video tutorials",  # what the event does not say
    "the library opens at nine",  # shares words, says something else
    "...",
    "",
])
def test_a_quote_of_something_else_is_not_repaired(quote: str) -> None:
    assert repair(quote, TEXT) is None


@given(st.text(max_size=80), st.text(max_size=200))
def test_a_repaired_quote_is_always_verbatim_in_the_event(quote: str, text: str) -> None:
    repaired = repair(quote, text)
    assert repaired is None or repaired in text
