"""Confidence as evidence arithmetic: pure functions, so every number can be explained.

confidence = sigmoid(prior_logit + Σ_i w_i·r^i − Σ_j w_j·r^j), capped to [floor, cap]:
supporting links sorted by weight, the i-th adding its weight times r^i (diminishing
returns), contradicting links likewise subtracted; explicit statements weigh more than
inferences. Without new evidence, confidence decays toward the prior with a half-life per
kind: c(t) = prior + (c₀ − prior)·½^(Δt / half_life).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from doxa.model.records import EvidenceLink, Kind, Record, UserModel


class ConfidenceConfig(BaseModel):
    """Every constant of the formula; change them here, not in code."""

    model_config = ConfigDict(frozen=True)

    prior: float = Field(default=0.3, gt=0.0, lt=1.0)
    weights: Mapping[str, float] = Field(default_factory=lambda: {
        "explicit": 2.0, "inferred": 1.0, "outcome": 1.2})
    diminishing: float = Field(default=0.6, gt=0.0, le=1.0)
    floor: float = 0.02
    cap: float = 0.97
    half_life_days: Mapping[str, float] = Field(default_factory=lambda: {
        "preference": 180.0, "belief": 90.0, "goal": 45.0, "motivation": 180.0,
        "constraint": 90.0})


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + math.exp(-z)))


def _diminished(weights: Sequence[float], r: float) -> float:
    return float(sum(w * r**i for i, w in enumerate(sorted(weights, reverse=True))))


def _weight(link: EvidenceLink, config: ConfidenceConfig) -> float:
    """A link's own weight (an observation's stated prior) or its basis's."""
    return link.weight if link.weight is not None else config.weights.get(link.basis, 1.0)


def prior_weight(confidence: float, links: int, config: ConfidenceConfig | None = None) -> float:
    """The weight each of `links` fresh supporting links needs so that, on a record with no
    other evidence, they give exactly `confidence`: how an observation's stated confidence
    is recorded as evidence that later evidence moves like any other. A confidence below
    the prior gives a negative weight (the caller doubts it more than doxa's default)."""
    config = config or ConfidenceConfig()
    wanted = min(config.cap, max(config.floor, confidence))
    spread = sum(config.diminishing**i for i in range(max(1, links)))
    return (_logit(wanted) - _logit(config.prior)) / spread


def evidence_score(evidence: Sequence[EvidenceLink],
                   config: ConfidenceConfig | None = None) -> float:
    """Log-odds of the record from its evidence; one link per event id counts."""
    config = config or ConfidenceConfig()
    by_event: dict[str, EvidenceLink] = {}
    for link in evidence:
        by_event.setdefault(link.event_id, link)
    support = [_weight(e, config) for e in by_event.values() if e.polarity == "supports"]
    against = [_weight(e, config) for e in by_event.values() if e.polarity == "contradicts"]
    return (_logit(config.prior) + _diminished(support, config.diminishing)
            - _diminished(against, config.diminishing))


def decay(confidence: float, kind: Kind, elapsed_days: float,
          config: ConfidenceConfig | None = None) -> float:
    """Fade toward the prior with the kind's half-life (no change for elapsed ≤ 0)."""
    if elapsed_days <= 0:
        return confidence
    config = config or ConfidenceConfig()
    half_life = config.half_life_days.get(kind, 90.0)
    factor: float = 0.5 ** (elapsed_days / half_life)
    return config.prior + (confidence - config.prior) * factor


def confidence_from_evidence(evidence: Sequence[EvidenceLink], kind: Kind, *,
                             at: datetime | None = None,
                             config: ConfidenceConfig | None = None) -> float:
    """Confidence from the evidence alone, decayed to `at` when given."""
    cfg = config or ConfidenceConfig()
    raw = _sigmoid(evidence_score(evidence, cfg)) if evidence else cfg.prior
    value = min(cfg.cap, max(cfg.floor, raw))
    if at is not None and evidence:
        last = max(e.observed_at for e in evidence)
        value = decay(value, kind, (at - last).total_seconds() / 86400.0, cfg)
    return round(value, 6)


def current_confidence(record: Record, at: datetime,
                       config: ConfidenceConfig | None = None) -> float:
    """The record's confidence today: its stored value decayed since its last evidence."""
    cfg = config or ConfidenceConfig()
    elapsed = (at - record.last_evidence_at).total_seconds() / 86400.0
    return round(decay(record.confidence, record.kind, elapsed, cfg), 6)


def decayed_model(model: UserModel, at: datetime,
                  config: ConfidenceConfig | None = None) -> UserModel:
    """The model with each record's confidence faded to `at` (what delivery should read)."""
    return model.with_records(
        r.model_copy(update={"confidence": current_confidence(r, at, config)})
        for r in model.records)
