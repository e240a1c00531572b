"""Redaction: personal data is masked before any text reaches the LLM (or the store).

A redactor is any `Callable[[str], str]`; the default masks e-mail addresses, phone numbers
and card-like numbers (13–19 digits passing the Luhn check), which evidence never needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from doxa.events.parse import Event

Redactor = Callable[[str], str]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_PHONE = re.compile(
    r"(?<!\w)(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){2,4}(?!\w)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[phone]" if 7 <= len(digits) <= 15 else match.group(0)


# Every pattern above needs an "@" or at least six digits; most event text has neither, and
# this check is what keeps redaction off the per-batch overhead. Anchored `match` with
# disjoint classes stays linear in the text's length.
_SIX_DIGITS = re.compile(r"(?:\D*\d){6}")


def default_redactor(text: str) -> str:
    """Mask e-mail addresses, card-like numbers and phone numbers."""
    if "@" not in text and not _SIX_DIGITS.match(text):
        return text
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)


def redact_event(event: Event, redactor: Redactor) -> Event:
    """The event with its text and string properties passed through the redactor."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redactor(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    text = redactor(event.text) if event.text else event.text
    properties = clean(event.properties)
    if text == event.text and properties == event.properties:
        return event
    return event.model_copy(update={"text": text, "properties": properties})
