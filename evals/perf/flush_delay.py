"""Buffered ingestion on vs_mem0.py's stream: LLM tokens per event, and the delay from an
event's arrival to the model reflecting it, under each flush policy.

    .venv/bin/python evals/perf/flush_delay.py [--users 20] [--events-per-user 15] [--seed 7]
                                               [--poll 60]

The stream is vs_mem0.py's (fixtures/demo plus `--users` synthetic users, 7 minutes or so
between a user's events). Every event arrives at its own timestamp, one at a time, through
`engine.add` into a SQLite store; a worker pass (`engine.flush`, what `doxa worker` runs)
is made every `--poll` seconds of stream time. The clock is simulated (the engine's
`clock=`), so a day of stream takes seconds and the delays are the policy's, not this
machine's: delay = the time of the pass that committed an event's extraction minus the
event's arrival. After the last event the passes go on until every buffer has flushed.
Tokens are counted by vs_mem0.py's counting server (exact cl100k_base with bpe-openai).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from doxa.core.flush import FlushPolicy
from doxa.engine import Engine
from doxa.events.parse import Event, load_file

ROOT = Path(__file__).resolve().parents[2]
POLICIES: dict[str, FlushPolicy] = {
    "defaults (50 ev, 1,500 tok, 1 h)": FlushPolicy(),
    "max wait 15 min": FlushPolicy(max_wait_s=900),
    "max wait 5 min": FlushPolicy(max_wait_s=300),
    "10 events": FlushPolicy(max_events=10),
    "every event (max_events=1)": FlushPolicy(max_events=1),
}


@dataclass
class BufferedRun:
    """What one policy did over the stream."""

    adds: int = 0
    passes: int = 0
    flushes: int = 0
    records: int = 0
    delays_s: list[float] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)


class SimClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def run_buffered(events: list[Event], base_url: str, policy: FlushPolicy,
                       poll_s: float) -> BufferedRun:
    """Feed the stream one event at a time through `engine.add`, with a worker pass every
    `poll_s` seconds of stream time; return the delays and what the passes did."""
    ordered = sorted(events, key=lambda e: (e.timestamp, e.user_id, e.id))
    clock = SimClock(ordered[0].timestamp)
    run = BufferedRun()
    pending: dict[str, list[datetime]] = {}
    step = timedelta(seconds=poll_s)
    with tempfile.TemporaryDirectory(prefix="flush-delay-") as tmp:
        engine = Engine(model="openai/bench", store=f"sqlite:///{tmp}/buffer.db",
                        base_url=base_url, api_key="x", clock=clock, flush=policy)

        async def worker_pass(at: datetime) -> int:
            clock.now = at
            report = await engine.flush()
            run.passes += 1
            for user, reason in report.reasons.items():
                if user in report.errors:
                    raise RuntimeError(f"flush of {user} failed: {report.errors[user]}")
                run.flushes += 1
                run.reasons[reason] += 1
                run.delays_s += [(at - a).total_seconds() for a in pending.pop(user, [])]
            return report.users_waiting

        next_pass = ordered[0].timestamp + step
        waiting = 0
        for event in ordered:
            if not waiting and next_pass < event.timestamp:
                # Nothing is buffered, so no pass before this event can do anything: skip to
                # the first pass at or after it, on the same grid.
                next_pass += step * -((next_pass - event.timestamp) // step)
            while next_pass <= event.timestamp:
                waiting = await worker_pass(next_pass)
                next_pass += step
            clock.now = event.timestamp
            await engine.add(event.user_id, event)
            pending.setdefault(event.user_id, []).append(event.timestamp)
            run.adds += 1
            waiting = 1
        while waiting:
            waiting = await worker_pass(next_pass)
            next_pass += step
        for user in {e.user_id for e in events}:
            run.records += len((await engine.model(user)).records)
        await engine.close()
    return run


def stream(users: int, per_user: int, seed: int) -> list[Event]:
    from vs_mem0 import synthetic  # the same stream, by the same code

    return load_file(ROOT / "fixtures/demo/events.jsonl").events + synthetic(
        users, per_user, seed)


def minutes(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 60


def main() -> None:
    from vs_mem0 import CountingServer, token_counter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--events-per-user", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--poll", type=float, default=60.0,
                        help="seconds of stream time between worker passes")
    args = parser.parse_args()
    events = stream(args.users, args.events_per_user, args.seed)
    how, count = token_counter()
    server = CountingServer(count=count)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result()
    print(f"stream: {len(events)} events, {len({e.user_id for e in events})} users; "
          f"a worker pass every {args.poll:g} s of stream time; tokens: {how}")
    print(f"{'policy':34} {'LLM calls':>9} {'tokens/ev':>9} {'delay p50':>9} {'p90':>7} "
          f"{'max':>7}  flushes by reason")
    for name, policy in POLICIES.items():
        server.phase = name
        run = asyncio.run(run_buffered(events, server.base_url, policy, args.poll))
        t = server.tally()
        assert len(run.delays_s) == len(events) == run.adds
        reasons = ", ".join(f"{n} {r}" for r, n in run.reasons.most_common())
        per_event = (t.prompt_tokens + t.completion_tokens) / len(events)
        print(f"{name:34} {t.calls:>9} {per_event:>9.1f} "
              f"{minutes(run.delays_s, 0.5):>7.1f} m {minutes(run.delays_s, 0.9):>5.1f} m "
              f"{max(run.delays_s) / 60:>5.1f} m  {reasons}")
        print(f"{'':34} mean delay {statistics.mean(run.delays_s) / 60:.1f} m, "
              f"{run.records} records held")
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result()


if __name__ == "__main__":
    main()
