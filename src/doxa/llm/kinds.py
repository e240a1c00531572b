"""The kind a statement's own opening verb names: "Prefers …" is a preference.

The prompt asks for statements that open with their kind's verb ("Prefers …", "Avoids …",
"Wants to …", "Believes …"), and small models do write them so, then file the record under
another kind: "Does not listen to streaming music" as a goal, "I like writing things out
by hand" as a belief. The statement is the model's considered answer and the `kind` field
its afterthought, so where the opening verb names a kind without doubt, that kind is used.
An opening that names none ("Needs to …", "Is …", anything else) leaves the model's kind.
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
                r"eats|uses|learns best)\b", re.I),
     "preference"),
)


def kind_named_by(statement: str) -> Kind | None:
    """The kind the statement's opening verb names, or None when it names none clearly."""
    opening = _SUBJECT.sub("", statement, count=1)
    for pattern, kind in _OPENINGS:
        if pattern.match(opening):
            return kind
    return None
