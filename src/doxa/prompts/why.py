"""The why pass's prompt: a batch's records and the related known ones, numbered, with the
words they rest on, and the batch's events.

The main extraction prompt asks what a user believes, wants and prefers; asking it for the
reasons too would make every call longer and the records worse on small models. So links
are asked in a second, short call (`doxa.llm.why`), only for a batch that yielded a goal:
the records are shown by number ([1], [2] ...), since a link is just two numbers and a
relation, and the events are shown again so that each link can cite the words that show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from doxa.core.injection import speaking_event_ids
from doxa.events.speakers import is_users_own
from doxa.llm.schema import Proposal
from doxa.model.records import LINK_TARGET_KIND, Record, UserModel
from doxa.prompts.render import Messages, PromptSet, escape, item_views
from doxa.relevance import Batch
from doxa.resources import data_dir

WHY_PROMPT = "extract_why"
LINKABLE_KINDS = frozenset({"goal", *LINK_TARGET_KIND.values()})
"""Kinds a link can start from or point at: a record of another kind is not shown."""
MAX_LINKS = 8
"""Links one answer may propose (the tool schema refuses more)."""
MAX_NEW_RECORDS = 3
"""Motivations and constraints one answer may add (the tool schema refuses more)."""
MAX_KNOWN = 12
"""Known records shown beside the batch's: those the extraction prompt showed, linkable."""
MAX_QUOTES = 2
"""Of a record's evidence, the quotes shown (the latest): enough to say what it rests on."""


@dataclass(frozen=True)
class ShownRecord:
    """One numbered record of the prompt: `ref` is `#<n>` for the batch's n-th proposal, or
    a known record's id (the ends `doxa.core.links.LinkProposal` takes)."""

    number: int
    ref: str
    kind: str
    statement: str
    quotes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class WhyMessages:
    """The rendered why prompt and what its numbers stand for."""

    messages: Messages
    shown: tuple[ShownRecord, ...]
    new_records: bool
    """Whether the answer may add motivation and constraint records (not under a schema)."""

    def by_number(self, number: int) -> ShownRecord | None:
        return self.shown[number - 1] if 1 <= number <= len(self.shown) else None


def shown_records(proposals: Sequence[Proposal], model: UserModel,
                  known_record_ids: frozenset[str]) -> list[ShownRecord]:
    """The batch's linkable proposals, then the linkable known records the extraction prompt
    showed (a known record a proposal reinforces is shown once, as that proposal: it lands
    there)."""
    shown: list[ShownRecord] = []
    for n, p in enumerate(proposals):
        if p.kind in LINKABLE_KINDS:
            shown.append(ShownRecord(len(shown) + 1, f"#{n}", p.kind, p.statement,
                                     tuple((ev.event_id, ev.quote) for ev in p.evidence
                                           if ev.quote.strip())[:MAX_QUOTES]))
    landing = {p.related_record_id for p in proposals
               if p.relation in ("reinforces", "refines") and p.related_record_id}
    known = [r for rid in sorted(known_record_ids - landing)
             if (r := model.find(rid)) is not None and _linkable(r)]
    for record in known[:MAX_KNOWN]:
        quotes = tuple((e.event_id, e.quote) for e in record.evidence if e.quote.strip())
        shown.append(ShownRecord(len(shown) + 1, record.id, record.kind, record.statement,
                                 quotes[-MAX_QUOTES:]))
    return shown


def _linkable(record: Record) -> bool:
    return record.kind in LINKABLE_KINDS and record.status in ("active", "achieved")


class WhyPrompt:
    """The versioned why templates (`prompts/extract_why/{system,user}.j2`)."""

    def __init__(self, folder: str | Path | None = None, *, new_records: bool = True) -> None:
        self.prompts = PromptSet(folder or data_dir("prompts") / WHY_PROMPT)
        self.new_records = new_records
        self.system = self.prompts.render_system(new_records=new_records, max_links=MAX_LINKS)

    @property
    def version(self) -> str:
        return self.prompts.version

    def render(self, batch: Batch, shown: Sequence[ShownRecord],
               known_record_ids: frozenset[str] = frozenset()) -> WhyMessages:
        """The messages asking for the links between `shown` that the batch's events show.

        Only the user's own words are shown: a link must quote them, so events without text,
        other speakers' turns and text speaking to the system could never be its evidence,
        and leaving them out keeps the call short (and the assistant's guesses out of it)."""
        speaking = speaking_event_ids(batch.items)
        own = [item for item in batch.items
               if item.text and is_users_own(item.speaker) and item.ref not in speaking]
        user = self.prompts.render_user(
            records=[{"number": r.number, "kind": r.kind,
                      "statement": escape(r.statement, "body"),
                      "quotes": [{"event_id": escape(eid, "body"), "quote": escape(q, "body")}
                                 for eid, q in r.quotes]} for r in shown],
            items=item_views(own, speaking), new_records=self.new_records)
        return WhyMessages(Messages(self.system, user, self.version, known_record_ids),
                           tuple(shown), self.new_records)
