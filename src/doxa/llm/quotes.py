"""Quote repair: a near-verbatim quote becomes the exact span of the event it cites.

Every quote doxa stores must be words the user really wrote, so a quote that is not in its
event is refused. Small models quote the right sentence but not letter for letter: they
change case or punctuation, straighten or curl quote marks, add an ellipsis where they
skipped words, stop a few words early or swap a word. Re-asking for that costs a call and
often fails again, so a close quote is replaced by the span of the event's own text that
best matches it. The repaired quote is always sliced out of the event text (never the
model's words), and only a span at least `MIN_SIMILARITY` alike is taken: a quote of
something the event does not say stays unrepaired and is refused as before.

Pure functions over strings; `doxa.llm.evidence` applies them to proposals.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from itertools import pairwise

from doxa.llm.schema import normalise

MIN_SIMILARITY = 0.82
"""How alike a quote and an event span must be (difflib's ratio on `normalise`d text, 0..1)
for the span to replace the quote. Measured on the near-misses small models write: 0.82
accepts one changed word in ten, a clause cut a few characters short or a dropped comma,
and refuses another sentence of the same event that shares a few words with the quote."""

MAX_EXTRA_WORDS = 2
"""Candidate spans are the quote's word count give or take this many words: enough for a
truncated or padded quote, few enough that a long event is searched in well under a
millisecond per quote."""

_WORD = re.compile(r"\w+(?:['’]\w+)*")
_ELLIPSIS = re.compile(r"\.\.\.+|…|\[\s*\.\.\.\s*\]")


def needs_repair(quote: str, text: str) -> bool:
    """Whether a non-empty quote is not, character for character, whole words of the text:
    it differs from every span of it, or it cuts a word in half ("over onl")."""
    quote = quote.strip()
    if not quote:
        return False
    at = text.find(quote)
    while at >= 0:
        end = at + len(quote)
        cut_before = at > 0 and _cuts(text[at - 1], quote[0])
        cut_after = end < len(text) and _cuts(quote[-1], text[end])
        if not (cut_before or cut_after):
            return False
        at = text.find(quote, at + 1)
    return True


def _cuts(left: str, right: str) -> bool:
    """Whether a boundary between these two characters falls inside a word."""
    return (left.isalnum() or left == "_") and (right.isalnum() or right == "_")


def similarity(a: str, b: str) -> float:
    """How alike two strings are once case, quote marks and white space are folded (0..1)."""
    return SequenceMatcher(None, normalise(a), normalise(b), autojunk=False).ratio()


def repair(quote: str, text: str, *, min_similarity: float = MIN_SIMILARITY) -> str | None:
    """The exact span of `text` that `quote` was meant to copy, or None when none is close.

    A quote the model cut with an ellipsis is matched part by part: when every part is
    found, in order, the span runs from the first part to the last (the words the model
    skipped are the event's own); otherwise the longest part alone is matched. Candidate
    spans are runs of whole words about as long as the quote; the most similar wins if it
    reaches `min_similarity`, with a span of the quote's own length winning a near tie (a
    swapped word is repaired to the event's word, not by dropping it).
    """
    parts = [p for p in _ELLIPSIS.split(quote) if _WORD.search(p)]
    if not parts:
        return None
    words = list(_WORD.finditer(text))
    if not words:
        return None
    if len(parts) > 1:
        spans = [_best_span(part, text, words, min_similarity) for part in parts]
        found = [s for s in spans if s is not None]
        if len(found) == len(spans) and all(a[1] <= b[0] for a, b in pairwise(found)):
            return text[found[0][0]:found[-1][1]]
        parts = [max(parts, key=len)]
    span = _best_span(parts[0], text, words, min_similarity)
    return None if span is None else text[span[0]:span[1]]


def _best_span(part: str, text: str, words: list[re.Match[str]],
               min_similarity: float) -> tuple[int, int] | None:
    """(start, end) in `text` of the word run most like `part`, if alike enough."""
    target = normalise(part)
    wanted = len(_WORD.findall(target))
    if wanted == 0:
        return None
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(target)
    best_ratio, best_span = 0.0, None
    for length in range(max(1, wanted - MAX_EXTRA_WORDS), wanted + MAX_EXTRA_WORDS + 1):
        if length > len(words):
            break
        for start in range(len(words) - length + 1):
            span = (words[start].start(), words[start + length - 1].end())
            matcher.set_seq1(normalise(text[span[0]:span[1]]))
            if matcher.real_quick_ratio() < best_ratio or matcher.quick_ratio() < best_ratio:
                continue
            ratio = matcher.ratio()
            score = ratio - 0.02 * abs(length - wanted)
            if ratio >= min_similarity and score > best_ratio:
                best_ratio, best_span = score, span
    return best_span
