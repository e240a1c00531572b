"""Confidence as evidence arithmetic: the formula's promises, each checked with numbers."""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from builders import T0
from doxa.core.confidence import ConfidenceConfig, confidence_from_evidence, decay
from doxa.model.records import EvidenceLink


def link(i: int, basis: str = "inferred", polarity: str = "supports") -> EvidenceLink:
    return EvidenceLink.model_validate({"event_id": f"e{i}", "basis": basis,
                                        "polarity": polarity, "observed_at": T0})


def test_worked_example_from_the_readme() -> None:
    one_explicit = confidence_from_evidence([link(1, "explicit")], "goal")
    assert round(one_explicit, 2) == 0.76
    three_inferred = confidence_from_evidence([link(i) for i in range(3)], "goal")
    assert round(three_inferred, 2) == 0.75
    assert confidence_from_evidence([link(1)], "goal") < three_inferred


def test_returns_diminish_and_are_capped() -> None:
    values = [confidence_from_evidence([link(i, "explicit") for i in range(n)], "belief")
              for n in range(1, 12)]
    gains = [b - a for a, b in itertools.pairwise(values)]
    assert all(g >= 0 for g in gains) and gains == sorted(gains, reverse=True)
    assert values[-1] == ConfidenceConfig().cap


def test_the_same_event_never_counts_twice() -> None:
    assert confidence_from_evidence([link(1), link(1)], "goal") == confidence_from_evidence(
        [link(1)], "goal")


def test_contradicting_evidence_lowers_and_decay_fades_toward_the_prior() -> None:
    support = [link(1, "explicit"), link(2)]
    assert confidence_from_evidence([*support, link(3, "explicit", "contradicts")],
                                    "belief") < confidence_from_evidence(support, "belief")
    faded = confidence_from_evidence(support, "preference", at=T0 + timedelta(days=360))
    assert 0.3 < faded < confidence_from_evidence(support, "preference")
    assert decay(0.9, "goal", 0) == 0.9


@given(st.lists(st.tuples(st.sampled_from(["explicit", "inferred", "outcome"]),
                          st.sampled_from(["supports", "contradicts"])), max_size=40),
       st.floats(min_value=0, max_value=5000))
def test_confidence_is_always_between_zero_and_one(links: list[tuple[str, str]],
                                                   days: float) -> None:
    evidence = [link(i, b, p) for i, (b, p) in enumerate(links)]
    value = confidence_from_evidence(evidence, "belief", at=T0 + timedelta(days=days))
    assert 0.0 <= value <= 1.0
