"""Short event ids in prompts: `e1`, `e2`, … in place of ids too long to copy cheaply.

Collected events carry ids like Segment's `messageId`, a UUID: about 20 tokens each in a
prompt, paid for every event shown on every call and again in every record's evidence, and
a small model copies them wrongly (a re-ask or a dropped record). When any event of a batch
has such an id, the model is shown a copy of the batch in which every event is named by its
place (`ShortIds.batch`); everything the answer names (evidence, re-pointed evidence,
reasons for a refusal) is mapped back to the real ids before anything leaves the extraction
(`ShortIds.restore`). Batches whose ids are short already are shown as they are, so their
prompts do not change.

The mapping is a pure function of the batch: the prompt of a batch API request and the
parse of its answer, made at different times, name events alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from doxa.core.injection import speaking_event_ids
from doxa.llm.evidence import RepairedQuote
from doxa.llm.schema import DroppedRecord, EvidenceQuote, Proposal
from doxa.relevance import Batch

if TYPE_CHECKING:
    from doxa.llm.extractor import ExtractionOutcome
    from doxa.llm.why import WhyOutcome

LONGEST_SHOWN_ID = 12
"""An id longer than this (characters) makes the batch be shown with short ids."""

_QUOTED_SHORT_ID = re.compile(r"(?<=')e\d+_*(?=')")


@dataclass(frozen=True)
class ShortIds:
    """A batch as the model is shown it, and the way back to the batch's own ids."""

    batch: Batch
    real: Mapping[str, str]
    """Short id → the event's own id; empty when the batch is shown as it is."""

    @classmethod
    def of(cls, batch: Batch) -> ShortIds:
        """`batch` with every event named `e<n>` (the events shown first, oldest first), when
        any of its event ids is longer than `LONGEST_SHOWN_ID`; else `batch` itself."""
        # An event that speaks to the system keeps its id: the id may be the instruction
        # ("system:record_that_user_wants…"), and the detector must read it again in the
        # batch shown. The prompt shows such an event without an id anyway.
        speaking = speaking_event_ids(batch.items)
        if all(len(event_id) <= LONGEST_SHOWN_ID or event_id in speaking
               for event_id in batch.events):
            return cls(batch, {})
        order = list(dict.fromkeys(
            [*(eid for item in batch.items for eid in item.event_ids), *batch.events]))
        short = {eid: eid if eid in speaking else _name(n, speaking)
                 for n, eid in enumerate(order, start=1)}
        shown = batch.model_copy(update={
            "items": tuple(item.model_copy(update={
                "event_ids": tuple(short[eid] for eid in item.event_ids)})
                for item in batch.items),
            "events": {short[eid]: event.model_copy(update={"id": short[eid]})
                       for eid, event in batch.events.items()},
        })
        return cls(shown, {s: eid for eid, s in short.items() if s != eid})

    def event_id(self, shown: str) -> str:
        """The event's own id for an id as shown (any other string is returned unchanged)."""
        return self.real.get(shown, shown)

    def restore(self, outcome: ExtractionOutcome) -> ExtractionOutcome:
        """The outcome with the batch's own ids wherever it names an event."""
        if not self.real:
            return outcome
        return replace(outcome, proposals=self.proposals(outcome.proposals),
                       dropped=self.dropped(outcome.dropped),
                       why=None if outcome.why is None else self.restore_why(outcome.why))

    def restore_why(self, outcome: WhyOutcome) -> WhyOutcome:
        """The why pass's records, links and refusals with the batch's own ids."""
        if not self.real:
            return outcome
        return replace(
            outcome, records=self.proposals(outcome.records),
            links=[link.model_copy(update={"evidence": self._evidence(link.evidence)})
                   for link in outcome.links],
            dropped_records=self.dropped(outcome.dropped_records),
            dropped_links=[replace(d, reasons=self._reasons(d.reasons))
                           for d in outcome.dropped_links])

    def proposals(self, proposals: Sequence[Proposal]) -> list[Proposal]:
        return [self._proposal(p) for p in proposals]

    def dropped(self, dropped: Sequence[DroppedRecord]) -> list[DroppedRecord]:
        return [DroppedRecord(self._proposal(d.record), self._reasons(d.reasons))
                for d in dropped]

    def _proposal(self, proposal: Proposal) -> Proposal:
        return proposal.model_copy(update={"evidence": self._evidence(proposal.evidence)})

    def _evidence(self, evidence: Sequence[EvidenceQuote]) -> list[EvidenceQuote]:
        restored: list[EvidenceQuote] = []
        for ev in evidence:
            update = {"event_id": self.event_id(ev.event_id)}
            if isinstance(ev, RepairedQuote) and ev.event_id_as_written is not None:
                update["event_id_as_written"] = self.event_id(ev.event_id_as_written)
            restored.append(ev.model_copy(update=update))
        return restored

    def _reasons(self, reasons: Sequence[str]) -> list[str]:
        """Reasons as written for the model ("… event 'e3' …"), naming the real events."""
        return [_QUOTED_SHORT_ID.sub(lambda m: self.event_id(m.group(0)), reason)
                for reason in reasons]


def _name(position: int, kept: frozenset[str]) -> str:
    """`e<position>`, unless an id kept as it is already reads so."""
    name = f"e{position}"
    while name in kept:
        name += "_"
    return name
