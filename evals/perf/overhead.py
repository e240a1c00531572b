"""Engine overhead per batch (everything but waiting for the LLM) and prompt tokens per batch,
for a 50-event batch into models of 10, 1,000 and 10,000 records.

    .venv/bin/python evals/perf/overhead.py [--store sqlite|memory] [--runs 40]

The LLM is an in-process stand-in that answers at once with a valid extraction built from
the batch, so what is timed is doxa's own work: validation, relevance, rendering, parsing,
merge and the store's load and commit.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from doxa.core.merge import MergeConfig, make_record_id
from doxa.engine import Engine
from doxa.events.parse import Event
from doxa.llm.schema import VALIDATION, Extraction
from doxa.model.records import EvidenceLink, Record, Revision, UserModel
from doxa.relevance import estimate_tokens

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = [("belief", "Believes"), ("goal", "Wants"), ("preference", "Prefers")]
WORDS = [
    "sso", "okta", "salesforce", "billing", "annual", "monthly", "roi", "cfo", "payback",
    "security", "soc2", "slack", "jira", "export", "csv", "dashboard", "mobile", "api",
    "limits", "onboarding", "training", "support", "pricing", "seats",
]


class InstantLLM:
    """Answers like instructor would, without a network: two records from the batch."""

    def __init__(self) -> None:
        self.prompt_tokens: list[int] = []

    async def create(self, *, response_model: type[Extraction], messages: Any = None,
                     hooks: Any = None, **kwargs: Any) -> Extraction:
        text = " ".join(m["content"] for m in messages) if messages else ""
        self.prompt_tokens.append(estimate_tokens(text))
        if hooks is not None:  # as instructor does: the engine counts calls from this hook
            hooks.emit_completion_response(SimpleNamespace(usage=None))
        ctx = VALIDATION.get()
        assert ctx is not None
        ids = sorted(ctx.batch.rendered_ids)[:2]
        return response_model.model_validate({"notes": "", "records": [
            {"kind": "goal", "statement": f"Wants {WORDS[len(ids)]} set up", "context": "x",
             "basis": "explicit", "evidence": [{"event_id": i}]} for i in ids]})


def synthetic_model(user: str, n: int) -> UserModel:
    """A model of `n` records, a third each belief, goal and preference, so the duplicate
    search for a proposed goal has same-kind records to read."""
    records = []
    for i in range(n):
        words = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(4))
        kind, verb = KINDS[i % 3]
        statement = f"{verb} {words} for rollout {i}"
        at = T0 + timedelta(minutes=i)
        records.append(Record(
            id=make_record_id(user, kind, statement, "seed"), user_id=user, kind=kind,
            statement=statement, confidence=0.6, valid_from=at, created_at=at, updated_at=at,
            evidence=(EvidenceLink(event_id=f"s{i}", observed_at=at),),
            history=(Revision(action="created", recorded_at=at, observed_at=at,
                              statement=statement, confidence=0.6, status="active",
                              event_ids=(f"s{i}",)),)))
    return UserModel(user_id=user, records=tuple(records))


def batch_events(user: str, run: int) -> list[Event]:
    start = T0 + timedelta(days=30 + run)
    return [Event(id=f"r{run}-e{i}", user_id=user, type="chat_message" if i % 5 == 0 else
                  "page_view", timestamp=start + timedelta(seconds=i),
                  text=f"We need {WORDS[i % len(WORDS)]} before rollout" if i % 5 == 0 else None,
                  properties={} if i % 5 == 0 else {"path": f"/p/{i % 7}"})
            for i in range(50)]


async def measure(size: int, store_kind: str, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = "memory://" if store_kind == "memory" else f"sqlite:///{Path(tmp) / 'b.db'}"
        llm = InstantLLM()
        # The cap per kind is lifted so the model really holds `size` records.
        engine = Engine(model="openai/bench", store=store, client=llm,
                        merge_config=MergeConfig(max_records_per_kind=size + 1000))
        user = f"u{size}"
        seed = synthetic_model(user, size)
        await engine.store.commit(seed, expected_version=0, changes=[], events=[],
                                  processed_ids=[])
        timings = []
        batches = calls = 0
        for run in range(runs + 3):
            events = batch_events(user, run)
            began = time.perf_counter()
            result = await engine.ingest(user, events)
            if run >= 3:  # warm-up excluded
                timings.append((time.perf_counter() - began) * 1000)
            batches += result.batches
            calls += result.llm_calls
        # A batch with nothing relevant (heartbeats and scroll pings only) must cost no call.
        noise = [Event(id=f"n{i}", user_id=user, type="heartbeat" if i % 2 else "scroll",
                       timestamp=T0 + timedelta(days=400, seconds=i)) for i in range(50)]
        quiet = await engine.ingest(user, noise)
        await engine.close()
    timings.sort()
    return {"p50_ms": statistics.median(timings),
            "p99_ms": timings[min(len(timings) - 1, round(0.99 * (len(timings) - 1)))],
            "prompt_tokens": statistics.median(llm.prompt_tokens),
            "calls_per_batch": calls / batches, "noise_calls": quiet.llm_calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    print(f"engine overhead per 50-event batch ({args.store} store, {args.runs} runs)")
    print(f"{'records':>8} {'p50 ms':>8} {'p99 ms':>8} {'prompt tokens':>14} "
          f"{'calls/batch':>12} {'calls, noise batch':>19}")
    for size in (10, 1_000, 10_000):
        r = asyncio.run(measure(size, args.store, args.runs))
        print(f"{size:>8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['prompt_tokens']:>14.0f} "
              f"{r['calls_per_batch']:>12.2f} {r['noise_calls']:>19.0f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
