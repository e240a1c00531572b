"""The kind a statement's own opening verb names: "Prefers …" is a preference.

The prompt asks for statements that open with their kind's verb ("Prefers …", "Avoids …",
"Wants to …", "Believes …"), and small models do write them so, then file the record under
another kind: "Does not listen to streaming music" as a goal, "I like writing things out
by hand" as a belief. The statement is the model's considered answer and the `kind` field
its afterthought, so where the opening verb names a kind without doubt, that kind is used.
An opening that names none ("Needs to …", "Is …", anything else) leaves the
model's kind.
Above both stands the person's own verb in the quoted words (`kind_said`): "I prefer …"
is a preference, however the model filed or phrased it.
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["preference", "goal", "belief"]

_SUBJECT = re.compile(r"^\s*(?:the (?:user|person|customer)|user|they|he|she|i)\s+", re.I)
"""A subject some models write before the verb ("The user prefers …", "I like …")."""

_OPENINGS: tuple[tuple[re.Pattern[str], Kind], ...] = (
    (re.compile(r"^(?:wants?|would like|needs?) to (?:avoid|not|keep|stick|stay)\b", re.I),
     "preference"),
    (re.compile(r"^(?:wants? to|aims? to|plans? to|hopes? to|intends? to|is (?:trying|"
                r"planning|hoping|aiming|saving|working|looking) (?:to|for|towards?)\b)", re.I),
     "goal"),
    (re.compile(r"^(?:believes?|thinks?|is convinced|trusts?|distrusts?|doubts?)\b", re.I),
     "belief"),
    (re.compile(r"^(?:prefers?|would rather|likes?|loves?|enjoys?|dislikes?|hates?|"
                r"avoids?|refuses?|does not|doesn't|do not|don't|never|always|only|"
                r"can't stand|cannot stand|won't|will not|is (?:vegetarian|vegan|allergic)|"
                r"eats|uses|learns? (?:\w+ )?best)\b", re.I),
     "preference"),
)


_SAID: tuple[tuple[re.Pattern[str], Kind], ...] = (
    (re.compile(r"\bI(?:'d| would)?(?: really| much| just| always| usually| basically)? "
                r"(?:prefer|rather|like|love|hate|enjoy|dislike|avoid|can't stand|"
                r"cannot stand|never|always|learn best|work best)\b", re.I), "preference"),
    (re.compile(r"\b(?:I|we)(?:(?: really| just| basically| only)? (?:don't|do not|won't|"
                r"will not|can't|cannot|only) (?:eat|drink|have|use|buy|wear|read|watch|fly|"
                r"drive|do|work|listen)|(?:'m| am|'re| are) (?:a )?(?:vegetarian|vegan|"
                r"allergic|intolerant|teetotal|hard of hearing|colou?r-?blind))\b", re.I),
     "preference"),
    (re.compile(r"\b(?:I|we) (?:believe|am convinced|are convinced)\b", re.I), "belief"),
    (re.compile(r"\b(?:I|we)(?: really)? (?:want to|'d like to|would like to|am trying to|"
                r"are trying to|plan to|hope to|have to|need to)\b|\bmy goal\b|\bour goal\b",
                re.I), "goal"),
)
"""The person naming the kind in their own words: "I prefer", "I believe", "I want to",
"I have to" (an outcome they must reach: "I have to prove ROI before they fund more").
What someone does not, will not or only does ("we don't fly", "I only use Linux", "I can't
eat dairy") and what they are that rules things out ("I'm vegetarian") are standing
preferences: the verb must follow, so "I don't know" or "I can't decide" names nothing."""


def kind_said(quotes: list[str]) -> Kind | None:
    """The one kind the person's quoted words name ("I prefer short answers"), or None when
    they name none or more than one. Their own verb outranks the statement's: "Wants to use
    short answers" quoting "I prefer short answers" is a preference."""
    named = {kind for quote in quotes for pattern, kind in _SAID if pattern.search(quote)}
    return named.pop() if len(named) == 1 else None


def kind_named_by(statement: str) -> Kind | None:
    """The kind the statement's opening verb names, or None when it names none clearly."""
    opening = _SUBJECT.sub("", statement, count=1)
    for pattern, kind in _OPENINGS:
        if pattern.match(opening):
            return kind
    return None


_NAMED_SUBJECT = re.compile(r"^\s*(?:the|this) (?:user|person|customer)\s+(?=[a-z])", re.I)


_FIRST_PERSON_OPENING = re.compile(
    r"^\s*I(?:\s+(?P<verb>prefer|like|love|enjoy|hate|dislike|avoid|refuse|want|need|use|eat"
    r"|believe|think|learn|read|listen|buy|trust)|\s+(?P<neg>do not|don't)|(?P<be>\s+am|'m)"
    r"|\s+(?P<cannot>can't|cannot|can not))\b", re.I)
"""A statement written in the person's own voice ("I prefer …", "I do not buy …"): its
opening, for the common verbs, in the third person the prompt asks for."""


def plain_statement(statement: str) -> str:
    """The statement in the prompt's house style, opening with its verb: "The person
    prefers spreadsheets." becomes "Prefers spreadsheets", "I do not buy leather." becomes
    "Does not buy leather". Small models write the subject out or slip into the person's
    voice, mostly when asked again; a verb the rule does not know is left as written."""
    opened = _NAMED_SUBJECT.sub("", statement, count=1)
    if opened == statement and (voiced := _FIRST_PERSON_OPENING.match(statement)):
        rest = statement[voiced.end():]
        if voiced["verb"]:
            opening = voiced["verb"].lower() + "s"
        elif voiced["neg"]:
            opening = "does not"
        elif voiced["be"]:
            opening = "is"
        else:
            opening = "cannot"
        opened = opening + rest
    if opened == statement:
        return statement
    opened = opened.strip().removesuffix(".")
    return opened[:1].upper() + opened[1:]
