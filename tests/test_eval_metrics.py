"""Scorers on small hand-built cases; every expected number is worked out in a comment."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from doxa.errors import ConfigError
from doxa.eval.fixtures import ExpectedRecord, ForbiddenRecord
from doxa.eval.match import ForbiddenHit, Matching, MatchPair, PredictedRecord, StatusPair
from doxa.eval.metrics import (
    ScoredCase,
    calibration,
    case_metrics,
    prf,
    suite_metrics,
)
from doxa.eval.thresholds import check_thresholds, parse_threshold
from doxa.usage import Usage, total_usage


def pred(rid: str, kind: str, confidence: float, *, status: str = "active",
         evidence: Sequence[str] = (), dimension: str | None = None,
         value: object = None) -> PredictedRecord:
    return PredictedRecord(id=rid, kind=kind, statement=rid, confidence=confidence,
                           status=status, evidence=tuple(evidence), dimension=dimension,
                           value=value)


def exp(kind: str, *, evidence: Sequence[str] = (), status: str = "active",
        dimension: str | None = None, value: object = None) -> ExpectedRecord:
    return ExpectedRecord(kind=kind, statement=f"{kind} label", evidence=tuple(evidence),
                          status=status, dimension=dimension, value=value)


def pairs(*items: tuple[str, int]) -> tuple[MatchPair, ...]:
    return tuple(MatchPair(predicted_id=p, expected_index=e, score=1.0) for p, e in items)


@pytest.fixture
def mixed() -> ScoredCase:
    """p1 matches the goal; p2 is an unmatched active belief (FP); p3 is an unmatched
    superseded goal (history, not an FP); the preference label is missed (FN)."""
    return ScoredCase(
        predicted=[pred("p1", "goal", 0.9, evidence=["e1", "e2"]),
                   pred("p2", "belief", 0.6),
                   pred("p3", "goal", 0.4, status="superseded")],
        expected=[exp("goal", evidence=["e1"]), exp("preference", evidence=["e3"])],
        forbidden=[ForbiddenRecord(statement="x"), ForbiddenRecord(statement="y")],
        matching=Matching(pairs=pairs(("p1", 0)), forbidden_hits=(
            ForbiddenHit(forbidden_index=0, predicted_id="p2", score=0.8),
            ForbiddenHit(forbidden_index=0, predicted_id="p1", score=0.6))),
    )


def test_prf_from_counts() -> None:
    assert prf(2, 1, 1).model_dump() == pytest.approx(
        {"tp": 2, "fp": 1, "fn": 1, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    # P = 1/4, R = 1/1, F1 = 2·0.25·1 / 1.25 = 0.4
    assert prf(1, 3, 0).f1 == pytest.approx(0.4)


def test_prf_conventions_for_empty_sides() -> None:
    assert (prf(0, 0, 0).precision, prf(0, 0, 0).recall, prf(0, 0, 0).f1) == (1.0, 1.0, 1.0)
    nothing_predicted = prf(0, 0, 2)
    assert (nothing_predicted.precision, nothing_predicted.recall, nothing_predicted.f1) == (
        0.0, 0.0, 0.0)
    nothing_expected = prf(0, 2, 0)
    assert (nothing_expected.precision, nothing_expected.recall, nothing_expected.f1) == (
        0.0, 0.0, 0.0)


def test_case_counts_per_kind_and_overall(mixed: ScoredCase) -> None:
    m = case_metrics(mixed)
    assert (m.per_kind["goal"].tp, m.per_kind["goal"].fp, m.per_kind["goal"].fn) == (1, 0, 0)
    assert (m.per_kind["belief"].tp, m.per_kind["belief"].fp) == (0, 1)
    assert (m.per_kind["preference"].tp, m.per_kind["preference"].fn) == (0, 1)
    # tp 1, fp 1, fn 1 → P = R = F1 = 0.5
    assert (m.overall.precision, m.overall.recall, m.overall.f1) == (0.5, 0.5, 0.5)


def test_evidence_precision_and_recall_on_matched_pairs(mixed: ScoredCase) -> None:
    ev = case_metrics(mixed).evidence
    # One pair: cited {e1, e2}, labelled {e1} → P = 1/2, R = 1/1, F1 = 2/3
    assert (ev.pairs, ev.hits, ev.predicted, ev.expected) == (1, 1, 2, 1)
    assert (ev.precision, ev.recall) == (0.5, 1.0)
    assert ev.f1 == pytest.approx(2 / 3)


def test_pairs_whose_label_lists_no_evidence_are_not_scored_for_evidence() -> None:
    case = ScoredCase([pred("p", "goal", 0.5, evidence=["e9"])], [exp("goal")], [],
                      Matching(pairs=pairs(("p", 0))))
    ev = case_metrics(case).evidence
    assert (ev.pairs, ev.precision, ev.recall, ev.f1) == (0, None, None, None)


def test_forbidden_violations_count_each_forbidden_record_once(mixed: ScoredCase) -> None:
    m = case_metrics(mixed)
    assert (m.forbidden_total, m.forbidden_violations) == (2, 1)


def test_brier_and_ece_over_compared_records(mixed: ScoredCase) -> None:
    # Compared: p1 (0.9, matched) and p2 (0.6, unmatched); superseded p3 is left out.
    # Brier = ((0.9-1)² + (0.6-0)²) / 2 = (0.01 + 0.36) / 2 = 0.185
    assert case_metrics(mixed).brier == pytest.approx(0.185)
    cal = suite_metrics([mixed]).calibration
    # ECE = ½·|1 - 0.9| + ½·|0 - 0.6| = 0.05 + 0.3 = 0.35
    assert cal.n == 2 and cal.ece == pytest.approx(0.35)
    assert [(b.count, b.accuracy) for b in cal.bins if b.count] == [(1, 0.0), (1, 1.0)]


def test_calibration_bins_hand_computed() -> None:
    cal = calibration([(0.8, 1), (0.8, 0), (0.2, 0)])
    # Brier = (0.04 + 0.64 + 0.04) / 3 = 0.24
    assert cal.brier == pytest.approx(0.24)
    # bin 0.8: conf 0.8, acc 0.5 → ⅔·0.3; bin 0.2: conf 0.2, acc 0 → ⅓·0.2
    assert cal.ece == pytest.approx(2 / 3 * 0.3 + 1 / 3 * 0.2)
    assert cal.bins[8].mean_confidence == pytest.approx(0.8) and cal.bins[8].accuracy == 0.5


def test_calibration_bin_edges() -> None:
    cal = calibration([(0.3, 1), (1.0, 1), (0.0, 0)])
    assert [b.count for b in cal.bins] == [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert len(cal.bins) == 10 and cal.bins[3].lo == pytest.approx(0.3)


def test_empty_predictions() -> None:
    case = ScoredCase([], [exp("goal", evidence=["e1"]), exp("belief")], [], Matching())
    m = case_metrics(case)
    assert (m.overall.tp, m.overall.fp, m.overall.fn, m.overall.f1) == (0, 0, 2, 0.0)
    assert m.brier is None and m.evidence.precision is None
    suite = suite_metrics([case])
    assert suite.calibration.n == 0 and suite.calibration.ece is None
    assert all(b.count == 0 for b in suite.calibration.bins)


def test_suite_metrics_are_micro_averaged_with_macro_f1_beside() -> None:
    perfect = ScoredCase([pred(f"p{i}", "goal", 0.9) for i in range(3)],
                         [exp("goal") for _ in range(3)], [],
                         Matching(pairs=pairs(("p0", 0), ("p1", 1), ("p2", 2))))
    missed = ScoredCase([], [exp("belief")], [], Matching())
    s = suite_metrics([perfect, missed], errored=1)
    # tp 3, fp 0, fn 1 → P = 1, R = 0.75, F1 = 1.5 / 1.75 = 6/7; macro = (1 + 0) / 2
    assert (s.overall.precision, s.overall.recall) == (1.0, 0.75)
    assert s.overall.f1 == pytest.approx(6 / 7)
    assert s.macro_f1 == 0.5
    assert (s.cases, s.errored) == (2, 1)


def test_status_accuracy_counts_only_multi_batch_cases() -> None:
    status = (StatusPair(predicted_id="g", expected_index=0, predicted_status="active",
                         expected_status="achieved"),
              StatusPair(predicted_id="h", expected_index=1, predicted_status="achieved",
                         expected_status="achieved"))
    labels = [exp("goal", status="achieved"), exp("goal", status="achieved")]
    preds = [pred("g", "goal", 0.7), pred("h", "goal", 0.7, status="achieved")]
    single = ScoredCase(preds, labels, [], Matching(status_pairs=status))
    assert suite_metrics([single]).status_accuracy is None
    multi = ScoredCase(preds, labels, [], Matching(status_pairs=status), multi_batch=True)
    s = suite_metrics([multi])
    assert (s.status_total, s.status_correct, s.status_accuracy) == (2, 1, 0.5)


def test_value_accuracy_per_dimension_on_matched_pairs() -> None:
    preds = [pred("a", "preference", 0.8, dimension="billing_period", value="Monthly "),
             pred("b", "preference", 0.8, dimension="billing_period", value="annual"),
             pred("c", "preference", 0.8)]
    labels = [exp("preference", dimension="billing_period", value="monthly"),
              exp("preference", dimension="billing_period", value="monthly"),
              exp("preference", dimension="channel", value="email"),
              exp("preference", dimension="channel", value="email")]
    case = ScoredCase(preds, labels, [], Matching(pairs=pairs(("a", 0), ("b", 1), ("c", 2))))
    acc = suite_metrics([case]).value_accuracy
    assert acc["billing_period"].model_dump() == {"n": 2, "correct": 1, "accuracy": 0.5}
    # c carries no dimension (records may not yet); the unmatched fourth label is not counted
    assert acc["channel"].model_dump() == {"n": 1, "correct": 0, "accuracy": 0.0}


def test_typed_answer_accuracy_asks_the_final_model_per_closed_dimension() -> None:
    """No matching needed: for each active label with a value in a closed dimension, the
    most confident active predicted record of that dimension answers. Hand-computed:
    stage asked twice (once right: business_case at 0.7 beats evaluating at 0.5; once the
    label says procurement: wrong); style asked once, answered by no record: wrong. The
    free-text dimension and the superseded label are not asked."""
    preds = [pred("s1", "goal", 0.7, dimension="purchase_stage", value="business_case"),
             pred("s2", "goal", 0.5, dimension="purchase_stage", value="evaluating"),
             pred("s3", "goal", 0.9, status="superseded", dimension="purchase_stage",
                  value="procurement"),
             pred("i1", "goal", 0.8, dimension="integration_needs")]
    labels = [exp("goal", dimension="purchase_stage", value="business_case"),
              exp("goal", dimension="purchase_stage", value="procurement"),
              exp("goal", dimension="purchase_stage", value="evaluating", status="superseded"),
              exp("preference", dimension="communication_style", value="bullets"),
              exp("goal", dimension="integration_needs", value="NetSuite")]
    case = ScoredCase(preds, labels, [], Matching())
    closed = frozenset({"purchase_stage", "communication_style"})
    answers = suite_metrics([case], closed_dimensions=closed).answer_accuracy
    assert answers["purchase_stage"].model_dump() == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert answers["communication_style"].model_dump() == {
        "n": 1, "correct": 0, "accuracy": 0.0}
    assert "integration_needs" not in answers
    assert suite_metrics([case]).answer_accuracy == {}  # no schema: nothing is asked
    assert parse_threshold("answer.purchase_stage=0.5") == ("answer.purchase_stage", 0.5)


def test_usage_adds_up_and_an_unknown_price_makes_the_cost_unknown() -> None:
    a = Usage(llm_calls=2, input_tokens=100, output_tokens=10, cost_usd=0.5, latency_s=1.0)
    b = Usage(llm_calls=1, input_tokens=50, output_tokens=5, cost_usd=0.25, cache_hits=1,
              dropped=2)
    total = total_usage([a, b])
    assert (total.llm_calls, total.input_tokens, total.output_tokens, total.cost_usd,
            total.cache_hits, total.dropped) == (3, 150, 15, 0.75, 1, 2)
    assert total_usage([a, Usage(cost_usd=None)]).cost_usd is None


def test_thresholds_parse_and_fail(mixed: ScoredCase) -> None:
    assert parse_threshold("f1=0.6") == ("f1", 0.6)
    assert parse_threshold("goal.recall=0.5") == ("goal.recall", 0.5)
    for bad in ("f1", "f1=high", "f1=1.5", "brier=1.2", "evidence_ece=0.2", "accuracy=0.5"):
        with pytest.raises(ConfigError, match="--fail-under"):
            parse_threshold(bad)
    s = suite_metrics([mixed])
    assert check_thresholds(s, [("f1", 0.5), ("goal.f1", 1.0)]) == []
    assert check_thresholds(s, [("f1", 0.6)]) == ["f1 = 0.500 < 0.6"]
    assert check_thresholds(s, [("status_accuracy", 0.5)]) == [
        "status_accuracy: not measured by this run (needs ≥ 0.5)"]
