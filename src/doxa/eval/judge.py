"""The LLM-judge matcher: a model decides whether two statements say the same thing.

Answers are cached on disk (sqlite), keyed by the judge model, the judge prompt's version
and the ordered pair, so re-scoring a run or a similar run costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from doxa.llm.client import LLMClient, RetryPolicy
from doxa.llm.providers import Prompt
from doxa.usage import Usage

log = logging.getLogger(__name__)

JUDGE_VERSION = "judge-v1"
PROMPT = """Two statements describe one user of a product. The first was extracted by a \
system; the second was written by a person who labelled the user's events.

Extracted: {predicted}
Labelled: {expected}

Do they say the same thing about the user (the same belief, goal or preference), even if \
worded differently? A more or less specific version of the same point counts as the same; \
a related but different point does not. Answer with a score from 0 (different) to 1 (same)."""


class Judgement(BaseModel):
    """Whether an extracted statement and a labelled statement say the same thing."""

    reason: str = Field(max_length=400, description="one short sentence")
    score: float = Field(ge=0.0, le=1.0, description="0 = different, 1 = the same meaning")


class JudgeCache:
    """Judge answers on disk; safe for the concurrent cases of one run (one connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        self._db.execute("CREATE TABLE IF NOT EXISTS judge (key TEXT PRIMARY KEY, score REAL)")

    @staticmethod
    def key(model: str, predicted: str, expected: str) -> str:
        return hashlib.sha256(
            json.dumps([JUDGE_VERSION, model, predicted, expected]).encode()
        ).hexdigest()

    def get(self, key: str) -> float | None:
        row = self._db.execute("SELECT score FROM judge WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def put(self, key: str, score: float) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO judge VALUES (?, ?)", (key, score))

    def close(self) -> None:
        self._db.close()


class LLMJudgeMatcher:
    """Asks `model` (a provider string) about each pair; cached answers are not asked again.

    The judge asks through the same front door as doxa's extraction (`LLMClient`): the
    same client for the provider string, its request shape and token counts, and the same
    retries of transient provider errors."""

    name = "llm"

    def __init__(self, model: str, *, cache: JudgeCache | None, base_url: str | None = None,
                 threshold: float = 0.5, concurrency: int = 4, client: Any | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.model = model
        self.threshold = threshold
        self.cache = cache
        self.base_url = base_url
        self.usage = Usage()
        self._client = client
        self._retry = retry
        self._llm: LLMClient | None = None
        self._gate = asyncio.Semaphore(max(1, concurrency))

    @property
    def stats(self) -> dict[str, int]:
        """Calls, cached answers and tokens, as the run file's `judge_usage` shows them."""
        u = self.usage
        return {"llm_calls": u.llm_calls, "cache_hits": u.cache_hits,
                "input_tokens": u.input_tokens, "output_tokens": u.output_tokens}

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    @property
    def llm(self) -> LLMClient:
        """Connected on first use, so a run whose pairs are all cached needs no API key."""
        if self._llm is None:
            self._llm = LLMClient.connect(self.model, self.base_url, client=self._client,
                                          retry=self._retry)
        return self._llm

    async def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return list(await asyncio.gather(*(self._one(a, b) for a, b in pairs)))

    async def _one(self, predicted: str, expected: str) -> float:
        key = JudgeCache.key(self.model, predicted, expected)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            self.usage += Usage(cache_hits=1)
            return cached
        async with self._gate:
            score = await self._ask(predicted, expected)
        if self.cache is not None:
            self.cache.put(key, score)
        return score

    async def _ask(self, predicted: str, expected: str) -> float:
        llm = self.llm
        request = llm.request(Prompt(
            user=PROMPT.format(predicted=predicted, expected=expected), max_tokens=300))
        judgement, raw = await llm.call(lambda: llm.client.create_with_completion(
            response_model=Judgement, max_retries=1, **request))
        self.usage += llm.usage(raw)
        log.debug("judge %.2f: %r vs %r (%s)", judgement.score, predicted, expected,
                  judgement.reason)
        return float(judgement.score)
