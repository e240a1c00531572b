"""The limiter admits at most rpm requests and tpm tokens per sliding minute, and backs off
after a 429 (on a fake clock: no test waits for real)."""

from __future__ import annotations

import itertools

import pytest

from doxa.llm import ratelimit
from doxa.llm.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit.asyncio, "sleep", fake.sleep)
    return fake


async def test_requests_per_minute_are_never_exceeded(clock: FakeClock) -> None:
    limiter = RateLimiter(rpm=10, clock=clock, headroom=1.0)
    times = []
    for _ in range(25):
        await limiter.acquire()
        times.append(clock.now)
    for i in range(len(times)):
        in_window = [t for t in times if times[i] <= t < times[i] + 60]
        assert len(in_window) <= 10
    # Paced: one request every 6 s (a burst of 1 for 10 RPM), not ten at once.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g == pytest.approx(6.0) for g in gaps)


async def test_tokens_per_minute_are_never_exceeded(clock: FakeClock) -> None:
    limiter = RateLimiter(tpm=1000, clock=clock, headroom=1.0)
    sent = []
    for _ in range(6):
        await limiter.acquire(400)
        sent.append(clock.now)
    assert sent[:2] == [1000.0, 1000.0] and sent[2] == pytest.approx(1060.0)


async def test_a_429_pauses_everyone_and_lowers_the_ceiling_then_recovers(
    clock: FakeClock,
) -> None:
    limiter = RateLimiter(rpm=100, clock=clock, headroom=1.0)
    await limiter.acquire()
    limiter.on_rate_limited(5.0)
    assert limiter.effective_rpm == pytest.approx(85)
    start = clock.now
    await limiter.acquire()
    assert clock.now == pytest.approx(start + 5.0)
    for _ in range(10):
        limiter.on_success()
    assert limiter.effective_rpm == pytest.approx(100)


async def test_no_limits_means_no_waiting(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    for _ in range(1000):
        await limiter.acquire(10_000)
    assert clock.now == 1000.0
