"""Render a batch and a bounded slice of the user's model into chat messages.

Templates live in `prompts/<name>/{system,user}.j2`; a prompt's version is the hash of its
template text, stored on every record it produced. The system message is static so that
provider prompt caching applies; everything about this user goes in the user message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2

from doxa.core.injection import speaking_event_ids
from doxa.errors import ConfigError
from doxa.events.speakers import is_users_own
from doxa.model.records import Record, UserModel
from doxa.model.schema import ModelSchema
from doxa.prompts.limits import MAX_RECORDS
from doxa.prompts.stated import StatedSentence, stated_sentences
from doxa.relevance import Batch, BatchItem, estimate_tokens
from doxa.resources import data_dir

DEFAULT_PROMPT = "extract"
SCHEMA_PROMPT = "extract_schema"
"""Used when the engine has a model schema and no prompt folder of its own."""

# Anything that could open or close our delimiters, however spelled, loses its angle bracket.
_DELIMITER = re.compile(r"<(\s*/?\s*(?:events?|system|user|assistant|tool)\b)", re.IGNORECASE)
_ATTRIBUTE = str.maketrans({"&": "&amp;", '"': "&quot;", "<": "&lt;", ">": "&gt;"})
_WORD = re.compile(r"[a-z0-9]{3,}")

Placement = Literal["attribute", "body"]


def escape(value: str, placement: Placement) -> str:
    """The one way any untrusted value enters a prompt.

    In an attribute (`id="..."`), `& " < >` become entities, so the value cannot end the
    attribute, add another or close the tag: whatever an id holds, the model reads it as
    that id. In a body (between `<event>` and `</event>`), anything that could open or
    close a delimiter loses its angle bracket (`‹`), so no text can end its event or fake
    another. Ordinary values pass byte for byte, which keeps prompts (and their recordings)
    unchanged for everything but hostile input.
    """
    if placement == "attribute":
        return value.translate(_ATTRIBUTE)
    return _DELIMITER.sub(r"‹\1", value)


@dataclass(frozen=True)
class Messages:
    """The rendered conversation, the prompt version and the record ids it showed."""

    system: str
    user: str
    prompt_version: str
    known_record_ids: frozenset[str]
    example_statements: tuple[str, ...] = ()
    """The statements of the system prompt's worked example (`example_statements`): a
    record that restates one of them copied the example, not this person's events."""
    stated: tuple[StatedSentence, ...] = ()
    """The user's stated sentences the prompt listed to check (`doxa.prompts.stated`)."""


class PromptSet:
    """One versioned pair of templates (system, user) loaded from a folder."""

    def __init__(self, folder: str | Path | None = None,
                 schema: ModelSchema | None = None) -> None:
        self.schema = schema
        self.folder = Path(folder) if folder else data_dir("prompts") / DEFAULT_PROMPT
        try:
            self._sources = {
                part: (self.folder / f"{part}.j2").read_text(encoding="utf-8")
                for part in ("system", "user")
            }
        except OSError as exc:
            raise ConfigError(
                f"prompt folder {self.folder} needs system.j2 and user.j2: {exc}"
            ) from exc
        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
        )
        self._templates = {part: env.from_string(src) for part, src in self._sources.items()}
        schema_text = schema.model_dump_json() if schema is not None else ""
        digest = hashlib.sha256(
            (self._sources["system"] + "\0" + self._sources["user"] + "\0" + schema_text).encode()
        ).hexdigest()
        self.version = f"{self.folder.name}@{digest[:10]}"

    @cached_property
    def system(self) -> str:
        """The system message: the same text for every call (what prompt caching needs)."""
        return self._templates["system"].render(max_records=MAX_RECORDS,
                                                schema=self.schema).strip()

    @cached_property
    def example_statements(self) -> tuple[str, ...]:
        """The worked example's statements: the system message is static, so they are read
        from it once, not on every render."""
        return example_statements(self.system)

    def render_system(self, **values: Any) -> str:
        """The system message from values of a prompt's own (the why pass's, which says
        whether new records may be proposed): still the same text for every call with the
        same values, so prompt caching applies."""
        return self._templates["system"].render(**values).strip()

    def render_user(self, **values: Any) -> str:
        """The user message from any values its template reads (a prompt other than the
        extraction's, such as the re-ask's, `doxa.prompts.reask`)."""
        return self._templates["user"].render(**values).strip()

    def render(self, batch: Batch, model: UserModel, *, max_records: int = 12,
               max_record_tokens: int = 600) -> Messages:
        """Messages for one batch; the model slice is bounded by count and tokens."""
        known = select_known_records(batch, model, limit=max_records, max_tokens=max_record_tokens)
        system = self.system
        speaking = speaking_event_ids(batch.items)
        listed = stated_sentences(batch.items, suspicious=speaking)
        user = self._templates["user"].render(
            known_records=[
                {"id": r.id, "kind": r.kind, "statement": escape(r.statement, "body")}
                for r in known
            ],
            items=item_views(batch.items, speaking),
            stated=[
                {"id": escape(stated.event_id, "attribute"), "text": escape(stated.text, "body")}
                for stated in listed
            ],
        ).strip()
        return Messages(system, user, self.version, frozenset(r.id for r in known),
                        self.example_statements, tuple(listed))


_EXAMPLE_RECORD = re.compile(r'^- \[[^\]\n]*\] "[^"\n]*" [a-z_]+: (?P<statement>.+)$', re.MULTILINE)


def example_statements(system: str) -> tuple[str, ...]:
    """The statements of the worked example's records, written in the system prompt as
    `- [a3] "I don't eat pork" preference: Does not eat pork`. Small models copy an example
    when the events give them little ("Wants quick meals on weeknights" from a chat about
    neck pain); knowing the example's statements lets review refuse such a copy."""
    return tuple(m["statement"].strip() for m in _EXAMPLE_RECORD.finditer(system))


def item_views(items: Iterable[BatchItem], speaking: frozenset[str]) -> list[dict[str, Any]]:
    """Events as a template shows them (`speaking`: ids of events that speak to the system)."""
    return [_item_view(item, speaking) for item in items]


def _item_view(item: BatchItem, speaking: frozenset[str]) -> dict[str, Any]:
    """One event as the template shows it: every field already escaped for its placement.

    Another speaker's turn (an assistant's, an agent's, the system's) is marked in its body,
    `[assistant] ...`, whatever the template does with `speaker`: it is shown only as what
    the user was answering, and the marker travels with the words the model might quote.
    """
    body = item.text if item.text is not None else item.describe()
    if item.text is not None and item.properties:
        body = f"{item.text} ({', '.join(f'{k}={v}' for k, v in sorted(item.properties.items()))})"
    if item.text is not None and not is_users_own(item.speaker):
        body = f"[{item.speaker}] {body}"
    return {
        "id": escape(item.ref, "attribute"),
        "also": escape(",".join(item.event_ids[1:]), "attribute"),
        "type": escape(item.type, "attribute"),
        "at": escape(item.first_at.isoformat().replace("+00:00", "Z"), "attribute"),
        "context": escape(item.context, "attribute") if item.context else None,
        "body": escape(body, "body"),
        "suspicious": item.ref in speaking,
        "speaker": None if is_users_own(item.speaker) else item.speaker,
    }


@lru_cache(maxsize=65_536)
def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.casefold()))


def _record_words(record: Record) -> frozenset[str]:
    return _words(record.statement) | _words(record.context)


def _is_active(record: Record) -> bool:
    return record.status == "active"


def select_known_records(
    batch: Batch, model: UserModel, *, limit: int, max_tokens: int
) -> list[Record]:
    """The at most `limit` active records most related to this batch, within a token budget.

    Relatedness is word overlap with the batch's text and context tags, then confidence;
    this keeps the prompt's size flat however large the model grows.
    """
    if limit <= 0:
        return []
    batch_words: set[str] = set()
    for item in batch.items:
        batch_words |= _words(item.text or item.describe())
        if item.context:
            batch_words |= _words(item.context)

    # The model's word index (a view kept with it): only records sharing a batch word are read.
    ranked = model.views.ranked(model.records, batch_words, limit * 4,
                                words_of=_record_words, keep=_is_active)

    chosen: list[Record] = []
    used = 0
    for record in ranked:
        cost = estimate_tokens(record.id + record.statement) + 4
        if len(chosen) >= limit or used + cost > max_tokens:
            break
        chosen.append(record)
        used += cost
    return sorted(chosen, key=lambda r: r.id)

