"""Quote repair: a near-verbatim quote becomes the exact span of the event it cites.

Every quote doxa stores is words the user really wrote, so a quote that is not in its event
is refused. Small models quote the right sentence but not letter for letter: they change
case or punctuation, straighten quotes, add an ellipsis, stop a few words early or swap a
word. Re-asking for that re-sends the whole batch and often fails again, so a close quote is
replaced by the span of the event's own text that best matches it. The repaired quote is
always a substring of the event text (never the model's words), and only a span similar
enough to what the model wrote is taken: a quote of something the event does not say stays
unrepaired and is refused.
"""

from __future__ import annotations

import re
import unicodedata
from difflib import SequenceMatcher

MIN_SIMILARITY = 0.8
"""How alike (difflib's ratio on normalised text, 0..1) a quote and an event span must be for
the span to replace the quote. 0.8 accepts a changed word in ten or a dropped clause end, and
refuses a quote of another sentence that shares a few words."""

_WORD = re.compile(r"\w+(?:['’]\w+)*")
_ELLIPSIS = re.compile(r"\.\.\.+|…")
_SPACE = re.compile(r"\s+")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def normalise(text: str) -> str:
    """Fold case, quotes, accents' composition and white space, for quote matching."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return _SPACE.sub(" ", text).strip(" \"'.,;:!?")


def is_verbatim(quote: str, text: str) -> bool:
    """Whether the quote is in the text, up to case, quotes, white space and end punctuation."""
    return normalise(quote) in normalise(text)


def repair(quote: str, text: str, *, min_similarity: float = MIN_SIMILARITY) -> str | None:
    """The exact span of `text` that `quote` was meant to copy, or None when none is close.

    Candidate spans are runs of whole words of the text about as long as the quote (an
    ellipsis splits the quote and its longest part is matched); the most similar one wins
    if it reaches `min_similarity`. The result is sliced out of `text`, so it is verbatim.
    """
    parts = [p for p in _ELLIPSIS.split(quote) if _WORD.search(p)]
    if not parts:
        return None
    target = normalise(max(parts, key=len))
    words = list(_WORD.finditer(text))
    wanted = len(_WORD.findall(target))
    if not words or wanted == 0:
        return None
    best_ratio, best_span = 0.0, (0, 0)
    matcher = SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    for length in range(max(1, wanted - 2), wanted + 3):
        for start in range(0, max(1, len(words) - length + 1)):
            end = min(len(words), start + length) - 1
            span = (words[start].start(), words[end].end())
            matcher.set_seq1(normalise(text[span[0]:span[1]]))
            if matcher.real_quick_ratio() < best_ratio or matcher.quick_ratio() < best_ratio:
                continue
            # A span of the quote's own length wins a near tie: a swapped word is repaired
            # to the event's word, not by dropping it.
            ratio = matcher.ratio() - 0.02 * abs(length - wanted)
            if ratio > best_ratio:
                best_ratio, best_span = ratio, span
    if best_ratio < min_similarity:
        return None
    return text[best_span[0]:best_span[1]]
