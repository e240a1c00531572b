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
    """Asks `model` (a provider string) about each pair; cached answers are not asked again."""

    name = "llm"

    def __init__(self, model: str, *, cache: JudgeCache | None, base_url: str | None = None,
                 threshold: float = 0.5, concurrency: int = 4, client: Any | None = None) -> None:
        self.model = model
        self.threshold = threshold
        self.cache = cache
        self.base_url = base_url
        self.stats = {"llm_calls": 0, "cache_hits": 0, "input_tokens": 0, "output_tokens": 0}
        self._client = client
        self._gate = asyncio.Semaphore(max(1, concurrency))

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    @property
    def client(self) -> Any:
        if self._client is None:
            from doxa.llm.providers import build_client, parse_provider

            self._client = build_client(parse_provider(self.model, self.base_url))
        return self._client

    async def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return list(await asyncio.gather(*(self._one(a, b) for a, b in pairs)))

    async def _one(self, predicted: str, expected: str) -> float:
        key = JudgeCache.key(self.model, predicted, expected)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            self.stats["cache_hits"] += 1
            return cached
        async with self._gate:
            score = await self._ask(predicted, expected)
        if self.cache is not None:
            self.cache.put(key, score)
        return score

    async def _ask(self, predicted: str, expected: str) -> float:
        from doxa.llm.providers import parse_provider

        spec = parse_provider(self.model, self.base_url)
        request: dict[str, Any] = {"model": spec.model, "max_tokens": 300, "messages": [
            {"role": "user", "content": PROMPT.format(predicted=predicted, expected=expected)}]}
        if spec.wire == "openai":
            request["temperature"] = 0.0  # the Anthropic SDK takes none
        judgement, raw = await self.client.create_with_completion(
            response_model=Judgement, max_retries=1, **request)
        self.stats["llm_calls"] += 1
        usage = getattr(raw, "usage", None)
        self.stats["input_tokens"] += int(getattr(usage, "prompt_tokens", None)
                                          or getattr(usage, "input_tokens", 0) or 0)
        self.stats["output_tokens"] += int(getattr(usage, "completion_tokens", None)
                                           or getattr(usage, "output_tokens", 0) or 0)
        log.debug("judge %.2f: %r vs %r (%s)", judgement.score, predicted, expected,
                  judgement.reason)
        return float(judgement.score)
