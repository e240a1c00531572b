"""The targeted re-ask: only the records that failed, what is wrong with each, and the
events they cite.

instructor's own re-ask sends the whole conversation again (every event of the batch, the
answer, the errors), so one misquoted record cost more than the first call, and a small
model shown everything again often failed the same way. This prompt holds only what the
failing records need; the records that passed are kept and never asked about again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doxa.core.injection import speaking_event_ids
from doxa.events.speakers import is_users_own
from doxa.prompts.render import Messages, PromptSet, escape, item_views
from doxa.relevance import Batch, BatchItem
from doxa.resources import data_dir

REASK_PROMPT = "reask"
FALLBACK_EVENTS = 2
"""A record that cites no event of the batch is shown this many of the user's own text
events: those sharing the most words with it (the model mistyped an id, most often)."""

_WORD = re.compile(r"[a-z0-9]{3,}")


@dataclass(frozen=True)
class Failing:
    """One record to re-ask: as the model wrote it (JSON data) and what is wrong with it."""

    record: Mapping[str, Any]
    problems: Sequence[str]

    def cited(self) -> set[str]:
        return {str(ev.get("event_id")) for ev in self.record.get("evidence") or ()
                if isinstance(ev, Mapping)}

    def words(self) -> set[str]:
        quotes = " ".join(str(ev.get("quote") or "") for ev in self.record.get("evidence") or ()
                          if isinstance(ev, Mapping))
        return set(_WORD.findall(f"{self.record.get('statement', '')} {quotes}".casefold()))


class ReaskPrompt:
    """The versioned re-ask templates (`prompts/reask/{system,user}.j2`)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.prompts = PromptSet(folder or data_dir("prompts") / REASK_PROMPT)

    @property
    def version(self) -> str:
        return self.prompts.version

    def render(self, batch: Batch, failing: Sequence[Failing],
               known_record_ids: frozenset[str] = frozenset()) -> Messages:
        """Messages asking again about `failing` only, with the events they need."""
        items = events_for(batch, failing)
        user = self.prompts.render_user(
            records=[{"record": escape(json.dumps(f.record, ensure_ascii=False), "body"),
                      "problems": escape("; ".join(f.problems), "body")} for f in failing],
            items=item_views(items, speaking_event_ids(items)))
        return Messages(self.prompts.system, user, self.version, known_record_ids)


def events_for(batch: Batch, failing: Sequence[Failing]) -> list[BatchItem]:
    """The batch's items the failing records cite, in batch order; for a record that cites
    none of them, the user's own text events that share the most words with it."""
    wanted: set[str] = set()
    for f in failing:
        cited = {item.ref for item in batch.items if f.cited() & set(item.event_ids)}
        if not cited:
            cited = _likeliest(batch.items, f.words())
        wanted |= cited
    return [item for item in batch.items if item.ref in wanted]


def _likeliest(items: Sequence[BatchItem], words: set[str]) -> set[str]:
    """The user's own text events most alike `words` (the latest first among equals)."""
    scored = [(len(words & set(_WORD.findall(item.text.casefold()))), n, item.ref)
              for n, item in enumerate(items) if item.text and is_users_own(item.speaker)]
    best = sorted(scored, key=lambda s: (-s[0], -s[1]))[:FALLBACK_EVENTS]
    return {ref for _, _, ref in best}
