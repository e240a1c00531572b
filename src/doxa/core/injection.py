"""Spot event content that speaks to the system instead of about the user (prompt injection).

The prompt already fences event text and tells the model it is data; this is doxa's own
check, independent of how obedient a model is: an event that carries instructions for the
system cannot be the evidence for a record, so a record resting only on such events is
re-asked and then dropped, and such an event never raises any confidence.

It reads every string of an event that reaches the prompt (text, property keys and values,
id, type, context) in several forms: as written; normalised (NFKC, so fullwidth letters are
plain ones; zero-width, bidi and tag characters removed; case folded); as a skeleton
(accents and other combining marks dropped, Cyrillic and Greek look-alikes folded to the
Latin letters they imitate, `_` as a space); and decoded, when a run of base64 or hex
decodes to text. Patterns cover English and thirteen other languages. Consecutive events
of a batch are also read as one text, so an instruction split across two events is seen.
Patterns cannot enumerate every phrasing in every language: the structural defences (every
field escaped in the prompt, the planted-statement check in doxa.llm.schema) do not rely
on them.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import Any

_PATTERNS = (
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
    r"\bremember\b.{0,30}\bfor\s+later\b", r"\breinforce\s+(this|it|that|these|those)\b",
    # asking the reader to keep, update or strengthen a stored record about the user
    r"\b(reinforce|update|keep|strengthen|confirm)\s+(that|this|the|my)\s+(record|belief|memory|profile\s+entry)\b",
    r"\bin\s+(every|all)\s+future\s+(updates?|summar(y|ies)|answers?|profiles?|runs?)\b",
    # more languages: ignore/forget the instructions, you are now, record that, notes to an AI
    # Italian
    r"\b(ignora|dimentica)\w*\b.{0,40}\b(istruzion|regol|indicazion)",
    r"\b(registra|annota|scrivi)\s+(che|come)\b", r"\bora\s+sei\b",
    r"\b(nota|istruzion\w*|messaggio)\s+(per|all['’]\s*)\s*(l['’]\s*|il\s+)?"
    r"(ia|ai|assistente|modello|sistema)\b",
    # Portuguese
    r"\b(ignor|esque[cç]|desconsider)\w*\b.{0,40}\b(instru[cç][oõ]es|orienta[cç][oõ]es|regras)",
    r"\b(registre|registra|anote|grave)\s+que\b", r"\bagora\s+voc[eê]\s+[eé]\b",
    r"\b(nota|instru[cç][aã]o|recado)\s+(para|pra)\s+(a\s+|o\s+)?(ia|assistente|modelo|sistema)\b",
    # Spanish
    r"\bolvid\w*\b.{0,40}\binstrucc", r"\b(registra|anota)\s+que\b",
    r"\bahora\s+eres\b", r"\bnota\s+para\s+(el\s+|la\s+)?(ia|asistente|modelo|sistema)\b",
    # French
    r"\boubli\w*\b.{0,40}\b(instructions|consignes|r[eè]gles)", r"\b(tu\s+es|vous\s+[eê]tes)\s+"
    r"(maintenant|d[eé]sormais)\b", r"\bnote[rz]?\s+que\b",
    # German
    r"\bvergiss\w*\b.{0,40}\b(anweisung|regel)", r"\bdu\s+bist\s+(jetzt|nun)\b",
    r"\bneue\s+anweisung", r"\b(speicher|vermerk|trag)\w*\b.{0,30}\bein,?\s+dass\b",
    # Dutch
    r"\b(negeer|vergeet)\b.{0,40}\b(instructies|regels|aanwijzingen)",
    r"\b(noteer|registreer)\s+dat\b", r"\bje\s+bent\s+nu\b",
    r"\b(notitie|instructie|bericht)\s+voor\s+(de\s+|het\s+)?(ai|assistent|model|systeem)\b",
    # Polish
    r"\b(zignoruj|ignoruj|zapomnij)\w*\b.{0,40}\b(instrukcj|polece|zasad)",
    r"\b(zapisz|zanotuj)\s*,?\s*[zż]e\b", r"\bjeste[sś]\s+teraz\b",
    r"\b(notatka|instrukcja|wiadomo[sś][cć])\s+dla\s+(ai|si|asystenta|modelu|systemu)\b",
    # Turkish
    r"(talimat|kural|komut)\w*\s.{0,30}(yok\s+say|g[oö]rmezden\s+gel|unut)",
    r"\b(oldu[gğ]unu|istedi[gğ]ini)\s+(kaydet|not\s+et|yaz)\b", r"\bart[iı]k\s+sen\b",
    r"\b(yapay\s+zeka|asistan|model|sistem)\s+i[cç]in\s+not\w*\b",
    r"\b(yapay\s+zekaya|asistana|modele|sisteme)\s+not\b",
    # Russian
    r"(игнорир|проигнорир|забудь|забуд|не\s+обращай).{0,40}(инструкц|указани|правил)",
    r"(запиши|зафиксируй|отметь)\w*\s*,?\s*что\b", r"\bты\s+теперь\b",
    r"\bтеперь\s+ты\b", r"системн\w+\s+(промпт|подсказк|инструкц)",
    r"(заметка|инструкция|указание|сообщение)\s+(для|к)\s+(ии|ai|ассистент|модел|систем)",
    # Chinese (simplified and traditional)
    r"(忽略|无视|無視|忘记|忘記).{0,12}(指令|指示|说明|說明|规则|規則|提示)",
    r"(记录|記錄|记下|記下|写入|寫入)(下来|下來)?\s*[:：,，]?\s*(该|該|这位|這位)?"
    r"(用户|用戶|客户|客戶)",
    r"你(现在|現在)是", r"(系统|系統)(提示|指令)",
    r"(给|給|致)\s*(AI|ai|人工智能|助手|模型|系统|系統)\s*的?\s*(指示|说明|說明|备注|備註|留言|指令)",
    # Japanese
    r"(以前|前|上記|これまで)の.{0,12}(指示|命令|ルール).{0,12}(無視|忘れ)",
    r"と(記録|登録|メモ|保存)して", r"あなたは今", r"システムプロンプト",
    # Korean
    r"(이전|위의|모든)\s*(지시|명령|규칙).{0,12}(무시|잊어)",
    r"(라고|다고)\s*(기록|저장|메모)\s*해",
    r"(너는|당신은)\s*이제", r"시스템\s*프롬프트",
    # Arabic
    r"(تجاهل|انس).{0,40}(التعليمات|الأوامر|القواعد|تعليمات)",
    r"(سجل|اكتب|دون)\s+(أن|ان)\s", r"\bأنت\s+الآن\b",
    r"(ملاحظة|تعليمات|رسالة)\s+(إلى|الى|لل)\s*(الذكاء|ذكاء|المساعد|مساعد|النموذج|نموذج|النظام)",
)
# One regex each, not one alternation: each keeps its own literal-prefix scan, which makes
# the set about ten times faster on long text than a single combined pattern.
_INJECTION = tuple(re.compile(p, re.IGNORECASE | re.DOTALL) for p in _PATTERNS)
_WINDOW = 300
"""Characters of each neighbour read together: an instruction split over two events sits
at the end of one and the start of the next."""

# Characters that render as nothing: zero-width, joiners, bidi embeddings and isolates,
# the soft hyphen, variation selectors, fillers. Unicode tag characters (U+E0000..E007F)
# are invisible copies of ASCII ("ASCII smuggling"): they are read as the ASCII they copy.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000\U000e0002-\U000e001f"
    "\U000e0080-\U000e01ef]")
_TAGS = MappingProxyType({cp: cp - 0xE0000 for cp in range(0xE0020, 0xE007F)})
# Look-alikes of Latin letters in other scripts (Unicode TR39 confusables.txt, lower case,
# after case folding), so "іgnоrе" written with Cyrillic letters reads as "ignore".
_LOOKALIKES = MappingProxyType(str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "з": "3", "и": "u", "і": "i",
    "ї": "i", "ј": "j", "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p",
    "с": "c", "т": "t", "у": "y", "ф": "f", "х": "x", "ц": "u", "ч": "4", "ш": "w", "щ": "w",
    "ь": "b", "ы": "bi", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ү": "y",
    "ҝ": "k", "ҡ": "k", "ӑ": "a", "ӓ": "a", "ӧ": "o", "ӱ": "y", "ѵ": "v", "ә": "e",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "ι": "i", "κ": "k",
    "λ": "l", "μ": "u", "ν": "v", "ο": "o", "π": "n", "ρ": "p", "σ": "o", "ς": "c", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    # Armenian, Latin extensions and IPA
    "ա": "w", "հ": "h", "ո": "n", "ս": "u", "օ": "o", "ı": "i", "ɑ": "a", "ɡ": "g", "ɩ": "i",
    "ʟ": "l", "ɴ": "n", "ʀ": "r", "ꜱ": "s", "ᴏ": "o", "ᴄ": "c", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z",
    "ℓ": "l", "_": " ",
}))
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_RUN = re.compile(r"(?<![0-9A-Za-z])(?:(?:\\x|0x)?[0-9a-fA-F]{2}[\s:,-]?){8,}")
_MAX_DECODE_DEPTH = 2


def readable_forms(text: str) -> tuple[str, ...]:
    """Every form of `text` the detector reads: as written, normalised, as a look-alike
    skeleton, and what any base64 or hex run in it decodes to (recursively, twice)."""
    return tuple(dict.fromkeys((text, *_scanned_forms(text, 0))))


_CACHED_STRINGS = 4_096
"""Per-string results kept in memory. Rendering, validation, a re-ask and merge ask about
the same few hundred strings of one batch; a bigger cache would only hold more users' text
(up to 20,000 characters each, erased users' included) in a long-running server."""


@lru_cache(maxsize=_CACHED_STRINGS)
def _scanned_forms(text: str, depth: int) -> tuple[str, ...]:
    """The forms the patterns run on. The text as written is not among them: the patterns
    ignore case, and the normalised form only ever matches more."""
    visible = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text).translate(_TAGS))
    normal = visible.casefold()
    decomposed = unicodedata.normalize("NFKD", normal)
    skeleton = "".join(c for c in decomposed if not unicodedata.combining(c))
    skeleton = unicodedata.normalize("NFKC", skeleton.translate(_LOOKALIKES))
    forms = dict.fromkeys((normal, skeleton))
    if depth < _MAX_DECODE_DEPTH:
        for payload in _decoded_payloads(visible):
            forms.update(dict.fromkeys(_scanned_forms(payload, depth + 1)))
    return tuple(forms)


def _decoded_payloads(text: str) -> Iterator[str]:
    """Text hidden in base64 (standard or URL-safe) or hex runs, when it decodes to text."""
    for run in _BASE64_RUN.findall(text):
        raw = run.rstrip("=")
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(raw + "=" * (-len(raw) % 4))
            except (binascii.Error, ValueError):
                continue
            if (found := _as_text(decoded)) is not None:
                yield found
                break
    for run in _HEX_RUN.findall(text):
        digits = re.sub(r"\\x|0x|[\s:,-]", "", run)
        if len(digits) % 2 == 0 and (found := _as_text(bytes.fromhex(digits))) is not None:
            yield found


def _as_text(data: bytes) -> str | None:
    """Decoded bytes as text, or None when they are binary (a hash, an image, a token)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\t")
    return text if text and printable >= 0.95 * len(text) and " " in text.strip() else None


def looks_like_injection(text: str | None) -> bool:
    """True when the text, in any form the detector reads, addresses the system (roles,
    delimiters, instructions to a model)."""
    return bool(text) and _matches(text or "")


@lru_cache(maxsize=_CACHED_STRINGS)
def _matches(text: str) -> bool:
    # Rendering, the answer's validation, the re-ask and merge each ask about the same
    # events; the patterns run once per distinct string.
    return any(pattern.search(form) is not None
               for form in _scanned_forms(text, 0) for pattern in _INJECTION)


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value, keys included (nested mappings and lists too).

    Iterative, though event properties are bounded in depth at validation."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            for key, child in reversed(list(item.items())):
                stack.append(child)
                stack.append(key)
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))


def event_strings(text: str | None, properties: Mapping[str, Any],
                  labels: Sequence[str | None] = ()) -> list[str]:
    """Every string of an event the prompt shows: labels (id, type, context), text, and
    every key and value of its properties."""
    return [s for s in (*labels, text) if s] + list(strings_in(properties))


def event_speaks_to_the_system(text: str | None, properties: Mapping[str, Any],
                               labels: Sequence[str | None] = ()) -> bool:
    """`looks_like_injection` over everything the prompt shows of an event: its text, every
    key and string in its properties (a search query, a form field, a page title are user
    data too), and its id, type and context (`labels`)."""
    return any(looks_like_injection(s) for s in event_strings(text, properties, labels))


def speaking_event_ids(items: Sequence[Any]) -> frozenset[str]:
    """Ids of the events of a batch (its items, in prompt order) that speak to the system:
    alone, or read together with the item before or after it (an instruction split in two).

    `items` are `doxa.relevance.BatchItem`s (typed loosely so the pure detector does not
    depend on batching)."""
    contents = [event_strings(item.text, item.properties) for item in items]
    flagged = [(bool(content) and any(looks_like_injection(s) for s in content)) or
               event_speaks_to_the_system(None, {}, (*item.event_ids, item.type, item.context))
               for item, content in zip(items, contents, strict=True)]
    for i in range(len(items) - 1):
        if not (flagged[i] or flagged[i + 1]) and contents[i] and contents[i + 1]:
            flagged[i] = flagged[i + 1] = looks_like_injection(
                " ".join(contents[i])[-_WINDOW:] + " " + " ".join(contents[i + 1])[:_WINDOW])
    return frozenset(eid for item, hit in zip(items, flagged, strict=True) if hit
                     for eid in item.event_ids)
