"""Review of proposed records against their batch: repair what needs no re-ask, refuse what
a re-ask cannot fix, and say which records are worth asking again.

A re-ask costs a call, so before one is made the answer is mended where doxa can do it
itself, deterministically and without ever inventing evidence:
- a quote close to its event's text becomes that text's exact span (`doxa.llm.quotes`);
- a quote cited to an event that does not say it, found word for word in exactly one of
  the user's own shown events, is re-pointed there;
- another speaker's turn (an assistant's, an agent's, the system's) or an event that speaks
  to the system, cited beside one of the user's own events, leaves the evidence.
Then each record is kept, refused for good (it rests only on words that are not the
user's: asking again cannot make them the user's), or left to a targeted re-ask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from doxa.core.similarity import content_words
from doxa.events.speakers import is_users_own
from doxa.llm.quotes import needs_repair, repair
from doxa.llm.schema import (
    BaseExtraction,
    Cites,
    DroppedRecord,
    EvidenceQuote,
    Proposal,
    ValidationContext,
    fold_answers,
    normalise,
    split_valid,
)
from doxa.prompts.stated import StatedSentence


class RepairedQuote(EvidenceQuote):
    """Evidence doxa mended: the quote is the event's exact span, and what the model wrote
    is kept beside it (on the stored evidence link too)."""

    quote_as_written: str
    event_id_as_written: str | None = None
    """The event the model cited, when doxa re-pointed the quote to the one that says it."""


def as_written(ev: EvidenceQuote) -> str | None:
    """What the model wrote, when doxa mended this evidence; None when it was kept as is."""
    return ev.quote_as_written if isinstance(ev, RepairedQuote) else None


@dataclass
class ChatValidation(ValidationContext):
    """Validation that knows who wrote each event, and that can hold its judgement back.

    While instructor parses an answer (`deferred`), only its shape is checked: evidence
    problems are judged afterwards by `review`, which repairs first and re-asks only the
    records that still fail. Once no longer deferred, a record citing another speaker's
    words is a problem like any other (`split_valid` drops it).
    """

    deferred: bool = False
    example_statements: tuple[str, ...] = ()
    """The prompt's worked example's statements (`doxa.prompts.render.example_statements`)."""

    def problems(self, record: Proposal) -> list[str]:
        if self.deferred:
            return []
        copied = (["the statement is the prompt's example, not what this person's events say"]
                  if self.copies_example(record) else [])
        asked = ([f"the statement is a question ({record.statement!r}), not something the "
                  "events show about the person"] if is_question(record.statement) else [])
        return copied + asked + self.speaker_problems(record) + super().problems(record)

    def copies_example(self, record: Proposal) -> bool:
        """Whether the statement restates one of the prompt's example statements (at least
        two of its content words are the example's) with words its cited events do not
        hold: a model with nothing to say copied the example, sometimes padded ("Believes
        that they do not eat pork and are Muslim", citing a headphones order). A person who
        really does avoid pork says so, and the shared words are then in their event."""
        words = content_words(record.statement)
        if not words or not self.example_statements:
            return False
        cited = content_words(" ".join(
            (event.text or "") for ev in record.evidence
            if (event := self.batch.event(ev.event_id)) is not None))
        for example in self.example_statements:
            shared = words & content_words(example)
            if len(shared) >= 2 and not shared & cited:
                return True
        return False

    def speaker_problems(self, record: Cites) -> list[str]:
        reasons = []
        for ev in record.evidence:
            event = self.batch.event(ev.event_id)
            if (event is not None and ev.event_id in self.batch.rendered_ids
                    and not is_users_own(event.speaker)):
                reasons.append(
                    f"event '{ev.event_id}' is the {event.speaker}'s words, not the user's; "
                    "only what the user said or did is evidence about them")
        if not reasons and self.quotes_only_others(record):
            reasons.append("the quote is another speaker's words, not the user's; only what "
                           "the user said or did is evidence about them")
        return reasons

    def citable(self, event_id: str) -> bool:
        """Whether a shown event can be evidence: the user's own, and not speaking to the
        system."""
        event = self.batch.event(event_id)
        return (event is not None and event_id in self.batch.rendered_ids
                and is_users_own(event.speaker) and event_id not in self.speaking)

    def final(self, record: Proposal) -> bool:
        """Whether a re-ask cannot fix the record: every event it cites was shown and none
        of them is the user's own words (another speaker's, or instructions)."""
        if (self.copies_example(record) or self.restates_injection(record)
                or is_question(record.statement)):
            return True
        shown = [ev.event_id for ev in record.evidence if ev.event_id in self.batch.rendered_ids]
        return ((bool(shown) and len(shown) == len(record.evidence)
                 and not any(self.citable(eid) for eid in shown))
                or self.quotes_only_others(record))

    def quotes_only_others(self, record: Cites) -> bool:
        """Whether every quote of the record is another speaker's words: found in a turn of
        theirs that was shown, and in no event the user could be cited by. Whatever id it
        was filed under, such a record is the assistant's suggestion put in the user's
        mouth; a re-ask would only look for somewhere else to pin it."""
        quotes = [normalise(ev.quote) for ev in record.evidence if ev.quote.strip()]
        if not quotes or len(quotes) < len(record.evidence):
            return False
        texts = [(self.citable(item.ref), normalise(item.text))
                 for item in self.batch.items if item.text]
        return all(any(q in text for own, text in texts if not own)
                   and not any(q in text for own, text in texts if own) for q in quotes)


def is_question(statement: str) -> bool:
    """Whether a statement is a question: the person's own question copied as the record
    ("What do I need?"). It says nothing about them; a re-ask would cost a call to learn
    what the first answer did not, so such a record is refused outright."""
    return statement.rstrip().rstrip('"\'').endswith("?")


@dataclass
class Review:
    """What an answer's records came to: kept, refused for good, or worth a re-ask."""

    kept: list[Proposal] = field(default_factory=list)
    dropped: list[DroppedRecord] = field(default_factory=list)
    fixable: list[DroppedRecord] = field(default_factory=list)
    repairs: int = 0
    """Evidence quotes doxa mended (a span taken, a citation re-pointed or trimmed)."""

    def cited(self) -> set[str]:
        """The event ids any of its records cites, kept, refused or fixable: what the
        answer looked at."""
        return {ev.event_id for record in [*self.kept, *(d.record for d in self.dropped),
                                           *(d.record for d in self.fixable)]
                for ev in record.evidence}

    def settled(self) -> Review:
        """This review with nothing left to ask: the fixable records are dropped too."""
        return Review(self.kept, [*self.dropped, *self.fixable], [], self.repairs)

    def then(self, reasked: Review) -> Review:
        """This review plus what a re-ask came to (the records it re-asked are no longer
        this review's: `_reask` leaves out of `fixable` what it asked about)."""
        return Review([*self.kept, *reasked.kept], [*self.dropped, *reasked.dropped],
                      [*self.fixable, *reasked.fixable], self.repairs + reasked.repairs)


def review(answer: BaseExtraction, ctx: ChatValidation,
           asked: Sequence[StatedSentence] = ()) -> Review:
    """Fold the answer's closed-dimension answers in, repair its records, and sort them.
    `asked`: the person's sentences the answer was asked about (`quote_asked`)."""
    return review_records(fold_answers(answer, ctx.batch).records, ctx, asked)


def review_records(records: Iterable[Proposal], ctx: ChatValidation,
                   asked: Sequence[StatedSentence] = ()) -> Review:
    """Repair `records` (`quote_asked`, `repair_record`) and sort them: kept, refused for
    good, fixable."""
    ctx.deferred = False
    mended: list[Proposal] = []
    repairs = 0
    shown = _shown_texts(ctx)
    for record in records:
        record, asked_quote = quote_asked(record, asked, shown)
        fixed, n = repair_record(record, ctx, shown)
        mended.append(fixed)
        repairs += n + asked_quote
    kept, failed = split_valid(BaseExtraction.model_construct(notes="", records=mended), ctx)
    kept, repeats = _without_unsupported_repeats(kept)
    result = Review(kept=kept, dropped=repeats, repairs=repairs)
    for dropped in failed:
        (result.dropped if ctx.final(dropped.record) else result.fixable).append(dropped)
    return result


def _without_unsupported_repeats(
        records: list[Proposal]) -> tuple[list[Proposal], list[DroppedRecord]]:
    """The records less those that repeat another's statement with a quote that says
    nothing of it, and those as dropped.

    Small models write one statement twice, once with the quote that says it ("can you
    keep answers short?") and once with the conversation's opening line ("my neck is
    stiff"); merged, the stray quote would stand in the record's evidence chain. A repeat
    is dropped only when its quotes share no content word with the statement and a
    sibling's do: evidence is never judged by wording alone when nothing better is there.
    """
    by_statement: dict[str, list[Proposal]] = {}
    for record in records:
        by_statement.setdefault(normalise(record.statement), []).append(record)
    unsupported: set[int] = set()
    for group in by_statement.values():
        if len(group) < 2:
            continue
        says_it = {id(record): _quotes_say(record) for record in group}
        if any(says_it.values()):
            unsupported.update(key for key, said in says_it.items() if not said)
    return ([record for record in records if id(record) not in unsupported],
            [DroppedRecord(record, ["the same statement as another record, cited to words "
                                    "that say nothing of it"])
             for record in records if id(record) in unsupported])


def _quotes_say(record: Proposal) -> bool:
    """Whether one of the record's quotes shares a content word with its statement."""
    statement = content_words(record.statement)
    return any(statement & content_words(ev.quote) for ev in record.evidence)


def quote_asked(record: Proposal, asked: Sequence[StatedSentence],
                shown: Mapping[str, str]) -> tuple[Proposal, int]:
    """The record with the asked sentence as its quote where it cites that sentence's
    event with words the event does not hold, and how many quotes were so mended.

    Asked about one sentence of the person's ("no record was written for these words"), a
    small model often writes its statement into the quote ("Does not use apps that link to
    the bank"), and the repair cannot find it in the event. The sentence it was asked
    about is the person's words, verbatim, in that event: it is the quote, and what the
    model wrote is kept beside it. Words that are in the event stay as written.
    """
    if not asked:
        return record, 0
    evidence: list[EvidenceQuote] = []
    mended = 0
    for ev in record.evidence:
        text = shown.get(ev.event_id, "")
        here = [s for s in asked if s.event_id == ev.event_id]
        quote = ev.quote.strip()
        if here and quote and normalise(quote) not in normalise(text) and repair(
                quote, text) is None:
            words = content_words(quote) | content_words(record.statement)
            best = max(here, key=lambda s: len(words & content_words(s.text)))
            evidence.append(_repaired(ev, best.text))
            mended += 1
        else:
            evidence.append(ev)
    return (record.model_copy(update={"evidence": evidence}), mended) if mended else (record, 0)


def repair_record(record: Proposal, ctx: ChatValidation,
                  shown: Mapping[str, str] | None = None) -> tuple[Proposal, int]:
    """The record with its evidence mended where doxa can do it without a re-ask, and how
    many pieces of evidence were mended; the record itself is left as it was."""
    evidence, repairs = repair_evidence(record.evidence, ctx, shown)
    if not repairs:
        return record, 0
    return record.model_copy(update={"evidence": evidence}), repairs


def repair_evidence(cited: Sequence[EvidenceQuote], ctx: ChatValidation,
                    shown: Mapping[str, str] | None = None,
                    ) -> tuple[list[EvidenceQuote], int]:
    """Evidence mended where doxa can do it without a re-ask (a record's or a causal
    link's), and how many pieces were mended: a near-verbatim quote becomes its event's
    exact span, a quote cited to the wrong event moves to the one user's event that says
    it, and another speaker's citations are trimmed when the user's own remain."""
    shown = _shown_texts(ctx) if shown is None else shown
    evidence: list[EvidenceQuote] = []
    repairs = 0
    for ev in cited:
        mended = _repair_quote(ev, ctx, shown)
        repairs += mended is not ev
        evidence.append(mended)
    own = [ev for ev in evidence if ctx.citable(ev.event_id)]
    if own and len(own) < len(evidence):
        repairs += len(evidence) - len(own)
        evidence = own
    if repairs:  # a citation moved onto an event the record already cites is one citation
        first = {ev.event_id: n for n, ev in reversed(list(enumerate(evidence)))}
        evidence = [ev for n, ev in enumerate(evidence) if first[ev.event_id] == n]
    return evidence, repairs


def _repair_quote(ev: EvidenceQuote, ctx: ChatValidation,
                  shown: Mapping[str, str]) -> EvidenceQuote:
    quote = ev.quote.strip()
    if not quote:
        return ev
    text = shown.get(ev.event_id)
    if text is None or (normalise(quote) not in normalise(text)
                        and repair(quote, text) is None):
        # Cited to an event that does not say it: the one user's event that does, if one.
        owners = [eid for eid, t in shown.items()
                  if ctx.citable(eid) and normalise(quote) in normalise(t)]
        if len(owners) == 1:
            # Moved only onto words of that event, whole words: a fragment found inside a
            # word ("P" in "podcasts") or differing in case is no quote of it.
            owned = repair(quote, shown[owners[0]])
            if owned is not None:
                return _repaired(ev, owned, event_id=owners[0])
        return ev
    if not needs_repair(quote, text):
        return ev
    span = repair(quote, text)
    return ev if span is None else _repaired(ev, span)


def _repaired(ev: EvidenceQuote, span: str, *, event_id: str | None = None) -> RepairedQuote:
    written = ev.quote_as_written if isinstance(ev, RepairedQuote) else ev.quote
    moved_from = ev.event_id if event_id is not None and event_id != ev.event_id else None
    return RepairedQuote(event_id=event_id or ev.event_id, quote=span, quote_as_written=written,
                         event_id_as_written=moved_from)


def _shown_texts(ctx: ValidationContext) -> dict[str, str]:
    """Each shown event's text as the prompt showed it (cut, if it was), by event id: a
    repaired quote is taken only from words the model saw."""
    return {item.ref: item.text for item in ctx.batch.items if item.text}


def restore_repairs(record: Proposal, dumped: Mapping[str, Any]) -> Proposal:
    """A record read back from `dump_with_repairs`, its mended evidence `RepairedQuote`s."""
    evidence = dumped.get("evidence")
    if not isinstance(evidence, Sequence) or not any(
            isinstance(e, Mapping) and e.get("quote_as_written") for e in evidence):
        return record
    return record.model_copy(update={"evidence": [
        RepairedQuote.model_validate(e) if isinstance(e, Mapping) and e.get("quote_as_written")
        else ev for e, ev in zip(evidence, record.evidence, strict=True)]})


def dump_with_repairs(record: Proposal) -> dict[str, Any]:
    """The record as JSON data, mended evidence with what the model wrote."""
    return record.model_dump(mode="json", serialize_as_any=True)
