"""Causal links in the eval: the fixture format, P/R/F1 on (from, relation, to) after record
matching, and the labelled suite in fixtures/eval/why scored through the oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doxa.errors import InvalidFixtureError
from doxa.eval.fixtures import load_suite, parse_case
from doxa.eval.match import Matching, MatchPair, PredictedRecord
from doxa.eval.metrics import ScoredCase, link_counts, suite_metrics
from doxa.eval.runner import run_oracle_case

SUITE = Path(__file__).parents[1] / "fixtures" / "eval" / "why"


def case_data(links: list[dict[str, Any]] | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "c", "user_id": "u", "batches": [[
            {"id": "e1", "type": "chat_message", "timestamp": "2026-03-02T10:00:00Z",
             "text": "We want the pilot live"},
            {"id": "e2", "type": "chat_message", "timestamp": "2026-03-02T10:01:00Z",
             "text": "The board needs proof of ROI"}]],
        "expected": [{"kind": "goal", "statement": "Wants the pilot live", "evidence": ["e1"]},
                     {"kind": "motivation", "statement": "Needs to prove ROI to the board",
                      "evidence": ["e2"]}]}
    if links is not None:
        data["links"] = links
    return data


@pytest.mark.parametrize(("links", "words"), [
    ([{"from": 1, "relation": "because", "to": 0}], "joins a goal to a motivation"),
    ([{"from": 0, "relation": "blocked_by", "to": 1}], "joins a goal to a belief"),
    ([{"from": 0, "relation": "because", "to": 5}], "must index records"),
    ([{"from": 0, "relation": "because", "to": 1, "evidence": ["e9"]}], "e9"),
    ([{"from": 0, "relation": "caused", "to": 1}], "relation"),
])
def test_a_bad_link_label_is_refused_naming_the_key(links: list[dict[str, Any]],
                                                    words: str) -> None:
    with pytest.raises(InvalidFixtureError, match=words) as caught:
        parse_case(case_data(links))
    assert "links[0]" in str(caught.value)


def test_links_absent_means_unlabelled_and_empty_means_none_expected() -> None:
    assert parse_case(case_data(None)).links is None
    assert parse_case(case_data([])).links == ()


def predicted(pid: str, kind: str, *links: tuple[str, str]) -> PredictedRecord:
    return PredictedRecord.model_validate({"id": pid, "kind": kind, "statement": pid,
                                           "confidence": 0.8, "links": list(links)})


def scored(links: list[dict[str, Any]] | None, *records: PredictedRecord,
           pairs: tuple[tuple[str, int], ...] = (("g", 0), ("m", 1))) -> ScoredCase:
    case = parse_case(case_data(links))
    matching = Matching(pairs=tuple(MatchPair(predicted_id=p, expected_index=i, score=1.0)
                                    for p, i in pairs))
    return ScoredCase(records, case.expected, case.forbidden, matching, links=case.links)


LABEL = [{"from": 0, "relation": "because", "to": 1}]


def test_a_link_counts_when_both_ends_match_the_labelled_records() -> None:
    right = scored(LABEL, predicted("g", "goal", ("because", "m")), predicted("m", "motivation"))
    assert link_counts(right) == (1, 0, 0)


def test_a_wrong_relation_or_an_unmatched_end_is_a_false_positive() -> None:
    wrong = scored(LABEL, predicted("g", "goal", ("constrained_by", "m")),
                   predicted("m", "motivation"))
    assert link_counts(wrong) == (0, 1, 1)
    stray = scored(LABEL, predicted("g", "goal", ("because", "m"), ("because", "x")),
                   predicted("m", "motivation"), predicted("x", "motivation"))
    assert link_counts(stray) == (1, 1, 0)
    unmatched = scored(LABEL, predicted("g", "goal", ("because", "m")),
                       predicted("m", "motivation"), pairs=(("g", 0),))
    assert link_counts(unmatched) == (0, 1, 1)


def test_no_motivation_shown_makes_any_predicted_link_a_false_positive() -> None:
    invented = scored([], predicted("g", "goal", ("because", "m")), predicted("m", "motivation"))
    assert link_counts(invented) == (0, 1, 0)


def test_a_case_without_link_labels_is_not_scored_for_links() -> None:
    unlabelled = scored(None, predicted("g", "goal", ("because", "m")),
                        predicted("m", "motivation"))
    assert link_counts(unlabelled) is None
    metrics = suite_metrics([unlabelled])
    assert metrics.links is None and metrics.link_cases == 0


def test_the_why_suite_has_the_cases_the_issue_asks_for() -> None:
    cases = load_suite(SUITE)
    assert len(cases) >= 15
    assert sum(1 for c in cases if c.links == ()) >= 3  # "no motivation shown"
    relations = {link.relation for c in cases for link in c.links or ()}
    assert relations == {"because", "constrained_by", "blocked_by", "in_order_to"}


async def test_the_oracle_scores_every_labelled_link_of_the_why_suite() -> None:
    cases = load_suite(SUITE)
    results = [await run_oracle_case(case) for case in cases]
    metrics = suite_metrics([r.scored() for r in results])
    assert metrics.link_cases == len(cases)
    assert metrics.links is not None
    assert (metrics.links.precision, metrics.links.recall) == (1.0, 1.0)
    assert metrics.links.tp == sum(len(c.links or ()) for c in cases)
    assert metrics.overall.f1 == 1.0


async def test_predictions_without_links_score_zero_link_recall() -> None:
    [case] = [c for c in load_suite(SUITE) if c.id == "why-ai-pilot-board-roi"]
    oracle = await run_oracle_case(case)
    bare = tuple(p.model_copy(update={"links": ()}) for p in oracle.predicted)
    metrics = suite_metrics([oracle.model_copy(update={"predicted": bare}).scored()])
    assert metrics.links is not None
    assert (metrics.links.tp, metrics.links.fn, metrics.links.recall) == (0, 3, 0.0)
