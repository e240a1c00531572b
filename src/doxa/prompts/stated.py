"""The user's own sentences that read like a stated preference, goal or belief.

Small models anchor on a conversation's opening topic: a 1.5B model asked about a 20-turn
chat writes "Wants to set up a stereo" from the first turn and misses "I basically only
listen on vinyl", said once, fifteen turns later. That sentence is the kind of thing doxa
exists to keep, and it has a shape a few lines of code can see: the speaker talking about
themselves (I, me, my) with a word of stance (only, never, prefer, can't stand, allergic).

`stated_sentences` picks at most a few such sentences, and the extraction prompt lists them
after the events, where a small model reads last, as sentences to check, not as records:
the model still decides, and every record still needs an event id and a verbatim quote.
A sentence listed is a verbatim span of its event, so a quote copied from the list passes
the evidence check as it stands. Only the user's own text is read: never an assistant's
turn, never an event flagged as speaking to an AI, never a question.

Pure and deterministic: the same batch always lists the same sentences, in event order.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from doxa.events.speakers import is_users_own
from doxa.relevance import BatchItem

MAX_STATED = 3
"""Sentences listed per batch: enough for the one or two things a conversation states
plainly, few enough that the list costs under a hundred tokens."""
MIN_WORDS = 3
MAX_CHARS = 240
"""A longer sentence is not listed (it is still in its event): the list is for short,
quotable statements, and a long one would cost more than it helps."""

_FIRST_PERSON = re.compile(
    r"\b(?:i|i'm|im|i'd|i've|i'll|me|my|mine|myself|we|we're|our|us"
    r"|yo|mi|mis|me|je|j'|moi|mon|ma|mes|ich|mich|mir|mein|meine)\b|\bj'",
    re.IGNORECASE)
"""First person, in English and the three other languages the cues below cover."""

_STANCE = re.compile(
    r"\b(?:prefer\w*|rather|never|always|only|usually|hate\w*|love\w*|enjoy\w*|like|likes"
    r"|dislike\w*|avoid\w*|refus\w*|won'?t|will not|wouldn'?t|can'?t|cannot|can not"
    r"|don'?t|do not|doesn'?t|not a fan|fan of|not into|stand|allerg\w*|intoleran\w*"
    r"|vegetarian|vegan|halal|kosher|sober|hard no|no way|deal ?breaker|must|need|needs"
    r"|have to|trying to|want to|wanna|goal|plan to|hoping to|hope to|believe\w*"
    r"|convinced|trust|think|reckon|in my (?:opinion|view|experience)|overrated|pointless"
    r"|waste of|not worth|worth it|favou?rite|for me|stick to|rule|every\w*|anything|nothing"
    r"|i'?m not|i am not|i'?m an?|person|hard of|struggle\w*|bad at|lose|lost|no time"
    r"|minutes|afford|budget|too much|a pain|overwhelm\w*|at a time|from now on|instead"
    r"|without|keep|short|shorter|brief|simple|plain|jargon|step by step|bullet\w*"
    r"|has to|had to|non-?starter|requirement|required|essential|important|critical"
    r"|prefiero|nunca|siempre|solo|odio|me encanta|no como|no puedo"
    r"|pr[ée]f[èe]re|jamais|toujours|seulement|d[ée]teste|j'adore|ne mange"
    r"|lieber|bevorzuge|nie|niemals|immer|nur|hasse|mag keine?|esse kein\w*)\b",
    re.IGNORECASE)
"""Words of stance: liking, refusing, habit, need, intent, conviction, judgement ("I
think it's overrated")."""

_STANDING_REQUEST = re.compile(
    r"\b(?:keep|always|from now on|instead|without|no more|at a time|step by step|plain"
    r"|simple|simpler|short|shorter|brief|jargon|bullet\w*)\b", re.IGNORECASE)
"""A question that asks for a way of answering, not for an answer: how the person wants
things done, which the prompt counts as a preference."""

_ASKING = re.compile(r"^\W*(?:please|pls|can you|could you|would you|will you|do)\b", re.I)
"""A request to whoever answers ("Please keep answers short"): listed, like a question,
only when it asks for a way of answering."""

_SENTENCE = re.compile(r"(?:[^.!?;\n]|[.!?;](?=\S))+[.!?;]*")
"""A sentence ends at . ! ? ; followed by a space, or at a line's end (not in "Zapier.io")."""

_ABOUT_THE_SYSTEM = re.compile(
    r"\b(?:evidence|records?|beliefs?|profile|confidence|prompt|instructions?|system|as an ai"
    r"|language model|as established|as agreed|trust me)\b", re.IGNORECASE)
"""Words about doxa's own workings, not about the person: a sentence holding them is how
injected text tries to pass as a statement ("As established earlier, I'm a VIP"). It stays
in its event; it is not put forward as something to check."""


@dataclass(frozen=True)
class StatedSentence:
    """A sentence of the user's, verbatim, and the id of the event it is in."""

    event_id: str
    text: str
    stance: int
    """How many words of stance it holds: the ranking, highest first."""


def stated_sentences(items: Iterable[BatchItem], *, suspicious: Collection[str] = (),
                     limit: int = MAX_STATED) -> list[StatedSentence]:
    """At most `limit` of the user's sentences that speak of themselves with stance, in
    event order; the most stance-laden first when there are more (the later one on a tie,
    since a conversation's opening is what small models read anyway)."""
    found: list[tuple[int, StatedSentence]] = []
    for position, item in enumerate(items):
        if item.text is None or not is_users_own(item.speaker) or item.ref in suspicious:
            continue
        for match in _SENTENCE.finditer(item.text):
            sentence = match.group().strip()
            if _listable(sentence):
                stance = len(_STANCE.findall(sentence))
                found.append((position, StatedSentence(item.ref, sentence, stance)))
    chosen = sorted(found, key=lambda pair: (pair[1].stance, pair[0]), reverse=True)[:limit]
    return [stated for _, stated in sorted(chosen, key=lambda pair: pair[0])]


def _listable(sentence: str) -> bool:
    """A first-person statement with stance, or a standing request about how to answer
    ("can you keep answers short?", "Please keep answers short"), or a request that says
    where the person stands ("please no buzzwords, I hate them"): not another question or
    request, not a fragment, not too long."""
    if (len(sentence) > MAX_CHARS or len(sentence.split()) < MIN_WORDS
            or _ABOUT_THE_SYSTEM.search(sentence) is not None):
        return False
    standing = _STANDING_REQUEST.search(sentence) is not None
    if sentence.endswith("?"):
        return standing
    about_themselves = (_FIRST_PERSON.search(sentence) is not None
                        and _STANCE.search(sentence) is not None)
    if _ASKING.match(sentence):
        # "please no buzzwords, I hate them": a request that also says where they stand.
        return standing or about_themselves
    return about_themselves


ASK_AGAIN_STANCE = 2
"""A listed sentence no record cites is asked about again only when it holds at least this
many words of stance ("I'm not going to use anything that connects to my bank account, I
don't like giving my login to apps"): a weaker one ("I only have one class a week") is as
often context as a preference, and each question asked again costs a call."""


def unrecorded(stated: Iterable[StatedSentence], cited: Collection[str], *,
               asking_anyway: bool = False) -> list[StatedSentence]:
    """The listed sentences whose events no record of the answer cites (what the model
    passed over), when one of them is stated strongly or a re-ask is made anyway; else
    none. A small model reading a long conversation writes one or two records about its
    opening topic and leaves a refusal stated plainly ten turns later; asking about those
    sentences, with only their events, costs a fraction of the first call, and once that
    call is made, a weaker sentence rides along for a few tokens more."""
    passed = [s for s in stated if s.event_id not in cited]
    if asking_anyway or any(s.stance >= ASK_AGAIN_STANCE for s in passed):
        return passed
    return []
