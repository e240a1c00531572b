"""Matching predicted records to expected ones: one-to-one, by a pluggable similarity.

A `Matcher` scores (predicted statement, expected statement) pairs in 0..1; `assign` is a
pure linear-sum assignment over those scores. Records only match within their kind; a
leftover pair that would match across kinds is reported as a kind mismatch, never counted
as a match. Matchers: `LexicalMatcher` (default, deterministic), `EmbeddingMatcher`
(all-MiniLM-L6-v2, offline) and `LLMJudgeMatcher` (cached on disk), in `doxa.eval.judge`
and `doxa.eval.embed`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from doxa.calibration.features import RecordFeatures, record_features
from doxa.core.similarity import content_words
from doxa.eval.fixtures import ExpectedRecord, ForbiddenRecord
from doxa.events.parse import Event
from doxa.model.records import Kind, Record, Relation, Status

Pair = tuple[str, str]
TIE_BREAK = 1e-9
"""Scale of the bonus that sends equal scores to the earlier row and column."""


class PredictedRecord(BaseModel):
    """A record of the final model as the eval compares it (and as the run file keeps it)."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Kind
    statement: str
    context: str = "general"
    confidence: float
    status: Status = "active"
    evidence: tuple[str, ...] = ()
    dimension: str | None = None
    value: Any = None
    features: RecordFeatures | None = None
    """What a calibration profile reads of the record (None in runs written before doxa
    kept them, and for baselines' answers)."""
    links: tuple[tuple[Relation, str], ...] = ()
    """The record's active causal links as (relation, target record id)."""

    @classmethod
    def from_record(cls, record: Record,
                    events: Mapping[str, Event] | None = None) -> PredictedRecord:
        """Supporting evidence ids only; `dimension`/`value` when the record carries them;
        the calibration features when the model's `events` are given."""
        return cls(
            id=record.id, kind=record.kind, statement=record.statement, context=record.context,
            confidence=record.confidence, status=record.status,
            evidence=tuple(e.event_id for e in record.supporting),
            dimension=record.dimension, value=record.value,
            features=None if events is None else record_features(record, events),
            links=tuple(link.key for link in record.active_links()),
        )


@runtime_checkable
class Matcher(Protocol):
    """Scores statement pairs 0..1; pairs at or above `threshold` may match."""

    name: str
    threshold: float

    async def score(self, pairs: Sequence[Pair]) -> list[float]:
        """One similarity in 0..1 per (predicted, expected) pair, in order."""


class LexicalMatcher:
    """Dice overlap of content words (lightly stemmed, stop words out): cheap, deterministic."""

    name = "lexical"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    async def score(self, pairs: Sequence[Pair]) -> list[float]:
        return [lexical_score(a, b) for a, b in pairs]


def lexical_score(a: str, b: str) -> float:
    """2|A∩B| / (|A|+|B|) over content words; equal text scores 1 even without any."""
    wa, wb = content_words(a), content_words(b)
    if not wa or not wb:
        return 1.0 if a.strip().casefold() == b.strip().casefold() else 0.0
    return 2 * len(wa & wb) / (len(wa) + len(wb))


class MatchPair(BaseModel):
    """A predicted record counted as the expected record at `expected_index`."""

    model_config = ConfigDict(frozen=True)

    predicted_id: str
    expected_index: int
    score: float


class KindMismatch(BaseModel):
    """A leftover pair that says the same thing under different kinds (an FP and an FN)."""

    model_config = ConfigDict(frozen=True)

    predicted_id: str
    expected_index: int
    predicted_kind: Kind
    expected_kind: Kind
    score: float


class StatusPair(BaseModel):
    """The predicted record (any status) that best matches an expected one, for status accuracy."""

    model_config = ConfigDict(frozen=True)

    predicted_id: str
    expected_index: int
    predicted_status: Status
    expected_status: Status

    @property
    def correct(self) -> bool:
        return self.predicted_status == self.expected_status


class ForbiddenHit(BaseModel):
    """An active predicted record that matches a forbidden one."""

    model_config = ConfigDict(frozen=True)

    forbidden_index: int
    predicted_id: str
    score: float


class Matching(BaseModel):
    """Everything matching found for one case."""

    model_config = ConfigDict(frozen=True)

    pairs: tuple[MatchPair, ...] = ()
    kind_mismatches: tuple[KindMismatch, ...] = ()
    status_pairs: tuple[StatusPair, ...] = ()
    forbidden_hits: tuple[ForbiddenHit, ...] = ()


def assign(scores: Sequence[Sequence[float]], threshold: float) -> list[tuple[int, int, float]]:
    """One-to-one (row, column, score) maximising total score; pairs under threshold dropped.

    Entries under the threshold weigh nothing, so they never displace a valid pair; equal
    scores go to the lower row, then the lower column.
    """
    from scipy.optimize import linear_sum_assignment

    if not scores or not scores[0]:
        return []
    n, m = len(scores), len(scores[0])
    # A bonus ∝ (n-i)(m-j) is largest in total when early rows take early columns
    # (rearrangement inequality), and too small to outweigh any real difference in score.
    weights = [
        [s + TIE_BREAK * (n - i) * (m - j) / (n * m) if s >= threshold else 0.0
         for j, s in enumerate(row)]
        for i, row in enumerate(scores)
    ]
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return [
        (int(i), int(j), float(scores[i][j]))
        for i, j in zip(rows, cols, strict=True)
        if scores[i][j] >= threshold
    ]


async def _scores(matcher: Matcher, pairs: Sequence[Pair], known: dict[Pair, float]) -> None:
    """Score each distinct pair not scored yet, in one call to the matcher."""
    todo = list(dict.fromkeys(p for p in pairs if p not in known))
    if todo:
        known.update(zip(todo, await matcher.score(todo), strict=True))


def _grid(
    rows: Sequence[PredictedRecord], cols: Sequence[tuple[int, ExpectedRecord]],
    known: dict[Pair, float], *, same_status: bool,
) -> list[list[float]]:
    return [
        [known[(p.statement, e.statement)] if not same_status or p.status == e.status else 0.0
         for _, e in cols]
        for p in rows
    ]


def _assign_by_kind(
    predicted: Sequence[PredictedRecord], expected: Sequence[ExpectedRecord],
    known: dict[Pair, float], threshold: float, *, same_status: bool,
) -> list[tuple[PredictedRecord, int, float]]:
    """Within each kind, one-to-one; `same_status` requires the expected status too."""
    found: list[tuple[PredictedRecord, int, float]] = []
    for kind in sorted({e.kind for e in expected}):
        rows = [p for p in predicted if p.kind == kind]
        cols = [(n, e) for n, e in enumerate(expected) if e.kind == kind]
        grid = _grid(rows, cols, known, same_status=same_status)
        found += [(rows[i], cols[j][0], s) for i, j, s in assign(grid, threshold)]
    return sorted(found, key=lambda f: f[1])


def _cross_kind(
    predicted: Sequence[PredictedRecord], expected: Sequence[tuple[int, ExpectedRecord]],
    known: dict[Pair, float], threshold: float,
) -> list[KindMismatch]:
    grid = [
        [known[(p.statement, e.statement)] if p.kind != e.kind and p.status == e.status else 0.0
         for _, e in expected]
        for p in predicted
    ]
    return [
        KindMismatch(predicted_id=predicted[i].id, expected_index=expected[j][0],
                     predicted_kind=predicted[i].kind, expected_kind=expected[j][1].kind, score=s)
        for i, j, s in assign(grid, threshold)
    ]


def _forbidden_pairs(
    predicted: Sequence[PredictedRecord], forbidden: Sequence[ForbiddenRecord]
) -> list[tuple[int, PredictedRecord]]:
    return [
        (n, p) for n, f in enumerate(forbidden) for p in predicted
        if p.status == "active" and f.kind in (None, p.kind)
    ]


async def match_case(
    predicted: Sequence[PredictedRecord], expected: Sequence[ExpectedRecord],
    forbidden: Sequence[ForbiddenRecord], matcher: Matcher,
) -> Matching:
    """Match one case's final model against its labels (see the module docstring)."""
    preds = sorted(predicted, key=lambda p: p.id)
    known: dict[Pair, float] = {}
    hits = _forbidden_pairs(preds, forbidden)
    await _scores(matcher, [(p.statement, e.statement) for p in preds for e in expected
                            if p.kind == e.kind]
                  + [(p.statement, forbidden[n].statement) for n, p in hits], known)
    main = _assign_by_kind(preds, expected, known, matcher.threshold, same_status=True)
    status = _assign_by_kind(preds, expected, known, matcher.threshold, same_status=False)
    used = {p.id for p, _, _ in main}
    left_p = [p for p in preds if p.id not in used]
    left_e = [(n, e) for n, e in enumerate(expected) if n not in {m[1] for m in main}]
    await _scores(matcher, [(p.statement, e.statement) for p in left_p for _, e in left_e
                            if p.kind != e.kind], known)
    return Matching(
        pairs=tuple(MatchPair(predicted_id=p.id, expected_index=n, score=s) for p, n, s in main),
        kind_mismatches=tuple(_cross_kind(left_p, left_e, known, matcher.threshold)),
        status_pairs=tuple(
            StatusPair(predicted_id=p.id, expected_index=n, predicted_status=p.status,
                       expected_status=expected[n].status) for p, n, _ in status),
        forbidden_hits=tuple(
            ForbiddenHit(forbidden_index=n, predicted_id=p.id, score=s) for n, p in hits
            if (s := known[(p.statement, forbidden[n].statement)]) >= matcher.threshold),
    )


MATCHERS = ("lexical", "embedding", "llm")


def make_matcher(name: str, *, judge_model: str = "openai/gpt-4o-mini",
                 base_url: str | None = None, cache_dir: str | None = ".doxa-cache",
                 threshold: float | None = None) -> Matcher:
    """A matcher by name; the embedding and judge ones import their dependencies lazily."""
    from doxa.errors import ConfigError

    if name == "lexical":
        return LexicalMatcher(threshold if threshold is not None else 0.5)
    if name == "embedding":
        from doxa.eval.embed import EmbeddingMatcher

        return EmbeddingMatcher(threshold if threshold is not None else 0.65)
    if name == "llm":
        from doxa.eval.judge import JudgeCache, LLMJudgeMatcher

        cache = JudgeCache(f"{cache_dir}/judge.db") if cache_dir else None
        return LLMJudgeMatcher(judge_model, cache=cache, base_url=base_url,
                               threshold=threshold if threshold is not None else 0.5)
    raise ConfigError(f"unknown matcher '{name}'; use one of {', '.join(MATCHERS)}")
