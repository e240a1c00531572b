"""Throughput of ingest_many against the benchmark provider: achieved requests per minute
as a fraction of the provider's limit, and requests that hit the limit anyway.

    .venv/bin/python evals/perf/throughput.py [--users 1000] [--latency 0.3] [--rpm 600]

The provider (doxa.testing.fake_provider, on loopback) answers after `--latency` seconds and
refuses with 429 past `--rpm` requests in any sliding minute; doxa is given the same limit.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from doxa.engine import Engine
from doxa.events.parse import Event
from doxa.llm.client import RetryPolicy
from doxa.testing.fake_provider import FakeProvider

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def user_events(n: int) -> list[Event]:
    user = f"bench-{n:05d}"
    return [Event(id=f"e{i}", user_id=user, type="chat_message",
                  timestamp=T0 + timedelta(minutes=i),
                  text=f"We need SSO and a Salesforce sync before rollout {n}-{i}")
            for i in range(3)]


async def run(users: int, latency: float, rpm: int, concurrency: int) -> None:
    provider = await FakeProvider(latency_s=latency, rpm=rpm).start()
    engine = Engine(model="openai/bench", store="memory://", base_url=provider.base_url,
                    api_key="x", rpm=rpm, retry=RetryPolicy(attempts=8, backoff_max=10))
    started = time.monotonic()
    results = await engine.ingest_many(((f"bench-{n:05d}", user_events(n)) for n in range(users)),
                                       concurrency=concurrency)
    elapsed = time.monotonic() - started
    await engine.close()
    await provider.stop()
    errors = sum(isinstance(r, BaseException) for r in results.values())
    times = sorted(provider.stats.request_times)
    # Paced at one second's worth of requests per second: over the run, every second
    # but the last admits `burst` requests, so the rate is (requests - burst) / span.
    burst = max(1, rpm // 60)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    achieved = (len(times) - burst) / span * 60 if span else 0.0
    print(f"users {users}, provider latency {latency * 1000:.0f} ms, limit {rpm} RPM, "
          f"concurrency {concurrency}")
    print(f"requests {provider.stats.requests}, answered {provider.stats.answered}, "
          f"refused with 429 {provider.stats.rate_limited}, user errors {errors}")
    print(f"elapsed {elapsed:.1f} s; steady state {achieved:.0f} RPM = {achieved / rpm:.1%} "
          f"of the limit (after a burst of {burst})")
    if len(times) > 1:
        print(f"first→last request {times[-1] - times[0]:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(run(args.users, args.latency, args.rpm, args.concurrency))


if __name__ == "__main__":
    main()
