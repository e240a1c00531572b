"""A cheap lexical check for "says the same thing": content words, lightly stemmed.

Conservative on purpose: two records that merely share words ("Prefers email contact",
"Prefers email reports") must not merge, so the threshold asks for most content words to
be shared. An embedding check can be plugged in where paraphrases matter more.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from types import MappingProxyType

Similarity = Callable[[str, str], float]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOPWORDS = frozenset("""
a an the and or but of to in on for with at by from as is are was were be been being it
its this that these those their they them user users i me my we our you your he she his
her wants want wanted believes believe thinks think prefers prefer likes like needs need
would should could can will to about into than then so very more most less just also not
no
""".split())  # noqa: SIM905 - a word list reads better as text
SYNONYMS = MappingProxyType({
    "reply": "answer", "response": "answer", "concise": "short", "brief": "short",
    "mail": "email", "e-mail": "email", "call": "phone", "phones": "phone",
    "cost": "price", "pricing": "price", "cheap": "price", "expensive": "price",
    "monthly": "month", "annually": "annual", "yearly": "annual",
})


def _stem(word: str) -> str:
    for suffix in ("ing", "ies", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    return SYNONYMS.get(word, word)


@lru_cache(maxsize=65_536)
def content_words(text: str) -> frozenset[str]:
    words = (w.casefold() for w in _WORD.findall(text))
    return frozenset(_stem(SYNONYMS.get(w, w)) for w in words if w not in STOPWORDS)


def lexical_similarity(a: str, b: str) -> float:
    """Jaccard overlap of content words, 0..1."""
    wa, wb = content_words(a), content_words(b)
    if not wa or not wb:
        return 1.0 if a.strip().casefold() == b.strip().casefold() else 0.0
    return len(wa & wb) / len(wa | wb)
