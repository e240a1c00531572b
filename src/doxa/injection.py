"""Spot event text that speaks to the system instead of about the user (prompt injection).

The prompt already fences event text and tells the model it is data; this is doxa's own
check, independent of how obedient a model is: an event whose text carries instructions
for the system cannot be the evidence for a record, so a record resting only on such
events is re-asked and then dropped, and such an event never raises any confidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

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
    r"指示.{0,10}無視", r"忽略.{0,10}指令", r"と記録して", r"지시.{0,10}무시",
    # encoded payloads, and imitations of doxa's own prompt (its record list and relations)
    r"\b(decode|base64)\b.{0,40}\b(follow|execute|obey|run|apply)\b",
    r"\bknown\s+records\b", r"\buse\s+relation\b", r"\brelated_record_id\b",
    # text addressed to an AI reader rather than written about the user
    r"\b(notes?|instructions?|messages?|memo|reminder|p\.?\s*s\.?)\s+(to|for)\s+(the\s+|any\s+|all\s+)?"
    r"(ai|assistants?|models?|bots?|llms?|summari[sz]ers?|system|profil\w*)\b",
    r"\b(ai|llm|bot|assistant)\s+note\b", r"\bnote\s+to\s+(self\s+)?ai\b",
    r"\[\s*(internal|admin|system|staff|ops)\b[^\]]{0,40}\bnote\b", r"\btrusted\s+source\b",
    r"instrucci[oó]n(es)?\s+para\s+(el\s+|la\s+)?(asistente|ia|modelo|sistema)",
    r"\b(note|consigne|instruction)s?\s+(pour|à)\s+(l['’]\s*)?(ia|assistant|mod[eè]le|syst[eè]me)",
    r"\b(hinweis|anweisung|notiz)\w*\s+(an|für)\s+(die\s+|den\s+)?(ki|assistent\w*|modell|system)",
    r"(AI|アシスタント|モデル)(への|に)(指示|メモ|命令)",
    r"(AI|어시스턴트|모델)(에게|에 대한)\s*(지시|메모)",
    # role play and persona swaps
    r"\byou\s+are\s+(now\s+)?(an?\s+)?\w*(bot|gpt|ai)\b", r"\bstay\s+in\s+character\b",
    r"\b(let'?s|let\s+us)\s+play\s+a\s+game\b", r"\bpretend\s+(to\s+be|you\s+are)\b",
    r"\bwith\s+no\s+(rules|restrictions|filters)\b",
    # bookkeeping commands and planted memories
    r"\bmark\s+(this|the)\s+(user|lead|customer|account|contact|client)\s+as\b",
    r"\bnow\s+(write|record|log|add|store)\b", r"\b(write|record|log)\s+(this|that)\s*:",
    r"\brecord\s+that\b",
    r"\bregistr[ae]\s+que\b", r"\benregistre[rz]?\s+que\b", r"\bnotier\w*\s+(dass|,)",
    r"\bremember\b.{0,30}\bfor\s+later\b", r"\breinforce\s+(this|it)\b",
    r"\bin\s+(every|all)\s+future\s+(updates?|summar(y|ies)|answers?|profiles?|runs?)\b",
]
_INJECTION = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE | re.DOTALL)


def looks_like_injection(text: str | None) -> bool:
    """True when the text addresses the system (roles, delimiters, instructions to a model)."""
    return bool(text) and _matches(text or "")


@lru_cache(maxsize=65_536)
def _matches(text: str) -> bool:
    # Rendering, the answer's validation, the re-ask and merge each ask about the same
    # events; the pattern runs once per distinct string.
    return _INJECTION.search(text) is not None


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value (nested mappings and lists included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def event_speaks_to_the_system(text: str | None, properties: Mapping[str, Any]) -> bool:
    """`looks_like_injection` over everything the prompt shows of an event: its text and every
    string in its properties (a search query, a form field, a page title are user data too)."""
    return looks_like_injection(text) or any(
        looks_like_injection(s) for s in strings_in(properties))
