"""A proposal's kind follows its statement's opening verb where that verb names one."""

from __future__ import annotations

import pytest

from doxa.llm.kinds import kind_named_by
from doxa.llm.schema import ProposedRecord


@pytest.mark.parametrize(("statement", "kind"), [
    ("Does not listen to streaming music", "preference"),
    ("I like writing things out by hand", "preference"),
    ("The user prefers email to calls", "preference"),
    ("Wants to avoid dairy", "preference"),
    ("Wants to run a first 5k", "goal"),
    ("Is trying to save for a house deposit", "goal"),
    ("Believes the Team plan is overpriced", "belief"),
    ("Thinks remote work suits them", "belief"),
])
def test_the_opening_verb_names_the_kind(statement: str, kind: str) -> None:
    assert kind_named_by(statement) == kind


@pytest.mark.parametrize("statement", ["Needs quick meals", "Is a renter", "Has 20 minutes a day",
                                       "Wants SSO before rollout",
                                       "Onboarding took too long"])
def test_an_opening_that_names_no_kind_names_none(statement: str) -> None:
    assert kind_named_by(statement) is None


def proposed(kind: str, statement: str) -> ProposedRecord:
    return ProposedRecord.model_validate({
        "kind": kind, "statement": statement,
        "evidence": [{"event_id": "e1", "quote": ""}]})


def test_a_proposal_filed_under_the_wrong_kind_takes_its_statements_kind() -> None:
    assert proposed("goal", "Does not listen to streaming music").kind == "preference"
    assert proposed("belief", "Wants to find a new job").kind == "goal"
    assert proposed("goal", "Needs quick meals").kind == "goal"  # no clear verb: kept


def test_an_invalid_kind_is_still_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        proposed("wish", "Prefers tea")


def quoted(kind: str, statement: str, quote: str) -> ProposedRecord:
    return ProposedRecord.model_validate({
        "kind": kind, "statement": statement,
        "evidence": [{"event_id": "e1", "quote": quote}]})


def test_the_persons_own_verb_outranks_the_statements() -> None:
    assert quoted("goal", "Wants to use short answers in bullet points",
                  "I prefer short answers in bullet points.").kind == "preference"
    assert quoted("goal", "Salesforce sync will help the sales team",
                  "I believe a two-way Salesforce sync is what will get our team to use this"
                  ).kind == "belief"
    assert quoted("preference", "Prefers to find a new job",
                  "I want to find a new data analyst job").kind == "goal"
    assert quoted("belief", "Believes the board is skeptical",
                  "The board is skeptical, so I have to prove ROI on AI before they fund "
                  "anything bigger.").kind == "goal"


def test_words_naming_two_kinds_or_none_leave_the_statement_to_decide() -> None:
    assert quoted("belief", "Does not eat meat",
                  "I believe in animal rights and I never eat meat").kind == "preference"
    assert quoted("goal", "Needs a CFO-ready case", "no built in preamp I think").kind == "goal"


def test_what_the_person_does_not_or_only_does_or_is_is_a_preference() -> None:
    assert quoted("belief", "Believes I am vegetarian",
                  "I'm vegetarian btw, have been since uni").kind == "preference"
    assert quoted("goal", "Travels by train", "we don't fly, it's a climate thing for us"
                  ).kind == "preference"
    assert quoted("goal", "Uses Linux", "I only use linux, not going back to windows"
                  ).kind == "preference"
    assert quoted("goal", "learn kanji best by writing things out by hand",
                  "I learn best by writing stuff out by hand").kind == "preference"


def test_a_negation_without_a_habit_verb_names_no_kind() -> None:
    assert quoted("goal", "Wants to know which coat to buy",
                  "I don't know which coat I need").kind == "goal"
    assert quoted("goal", "Wants to pick a laptop", "I can't decide between these two"
                  ).kind == "goal"


def test_a_written_out_subject_is_left_off_the_statement() -> None:
    record = quoted("goal", "The person prefers using spreadsheets instead of bank apps.",
                    "I'm not going to use anything that connects to my bank account")
    assert (record.kind, record.statement) == (
        "preference", "Prefers using spreadsheets instead of bank apps")
    assert quoted("goal", "The user wants to run a 5k", "5k").statement == "Wants to run a 5k"
    kept = "Person-centred care matters to them."
    assert quoted("belief", kept, "care").statement == kept


def test_a_statement_in_the_persons_voice_opens_in_the_third_person() -> None:
    cases = {"I prefer not to buy products made from animals.":
             "Prefers not to buy products made from animals",
             "I don't fly": "Does not fly", "I'm vegetarian": "Is vegetarian",
             "I can't eat dairy": "Cannot eat dairy", "I want to run a 5k": "Wants to run a 5k",
             "I watch films at night": "I watch films at night",  # a verb it does not know
             "Imports photos": "Imports photos"}
    for written, plain in cases.items():
        assert quoted("preference", written, "x").statement == plain
