"""Spot event text that speaks to the system instead of about the user (prompt injection).

The prompt already fences event text and tells the model it is data; this is doxa's own
check, independent of how obedient a model is: an event whose text carries instructions
for the system cannot be the evidence for a record, so a record resting only on such
events is re-asked and then dropped, and such an event never raises any confidence.
"""

from __future__ import annotations

import re

_PATTERNS = [
    # role markers and fake delimiters
    r"(^|[\s>\]\"'])(system|assistant|developer)\s*(prompt|message|override)?\s*:",
    r"</?\s*(events?|system|instructions?|tool_call|function_call)\b",
    r"-{2,}\s*end\s+of\s+(data|events|input)", r"\[/?(inst|system)\]", r"<\|im_(start|end)\|>",
    # instructions to the model, in several languages
    r"\b(ignore|disregard|forget)\b.{0,40}\b(previous|prior|above|earlier|all)\b.{0,30}"
    r"\b(instructions?|rules|prompts?|messages?)",
    r"\b(add|create|insert|record|store|write)\b.{0,30}\b(belief|goal|preference|record)s?\b"
    r".{0,20}[:'\"]",
    r"\bset\b.{0,30}\bconfidence\b", r"\bconfidence\s*(=|:|to)\s*(1(\.0+)?|100\s*%)",
    r"\b(reveal|print|show|repeat|output)\b.{0,30}\b(system\s+)?(prompt|instructions)\b",
    r"\byou\s+are\s+now\b", r"\bact\s+as\b.{0,30}\b(admin|system|developer)\b",
    r"\bevidence\s*[:=]\s*\[?\s*['\"]?[a-z_-]*\d+", r"\"records\"\s*:\s*\[",
    r"\bignorier\w*\b.{0,40}\b(anweisung|regel)", r"\bignor\w+\b.{0,40}\binstruc",
    r"\b(nouvelle|nouvelles)\s+instructions?\b", r"\bnuevas?\s+instrucciones\b",
    r"指示を無視", r"忽略.{0,10}指令",
]
_INJECTION = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE | re.DOTALL)


def looks_like_injection(text: str | None) -> bool:
    """True when the text addresses the system (roles, delimiters, instructions to a model)."""
    return bool(text) and _INJECTION.search(text or "") is not None
