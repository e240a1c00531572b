"""One limiter for every call an engine makes: requests and tokens per minute.

Concurrency alone cannot keep a provider under its rate limit; this does, so a backfill
runs right up to the limit without tripping it. Requests are paced as a token bucket that
refills at rpm/60 a second with a burst of one second's worth (providers enforce limits
over short intervals too), and never more than `rpm` requests or `tpm` tokens fall in any
sliding minute; when the provider still answers 429 (another client
shares the key), it pauses everyone for the Retry-After and lowers its own ceiling a
little, then creeps back up with each success (additive increase, multiplicative decrease).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_S = 60.0


@dataclass
class RateLimiter:
    """`await limiter.acquire(tokens)` before a call; `on_rate_limited(wait)` after a 429."""

    rpm: float | None = None
    tpm: float | None = None
    clock: Callable[[], float] = time.monotonic
    backoff: float = 0.85
    recovery: float = 0.02
    headroom: float = 0.97
    """Aim this far under the limits: requests reach the provider a little later and
    less evenly than they leave the limiter, and a provider counts on arrival."""
    _scale: float = 1.0
    _paused_until: float = 0.0
    _sent: deque[tuple[float, int]] = field(default_factory=deque)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waited_s: float = 0.0

    @property
    def effective_rpm(self) -> float | None:
        return self.rpm * self._scale * self.headroom if self.rpm else None

    def _delay(self, tokens: int, now: float) -> float:
        while self._sent and now - self._sent[0][0] >= WINDOW_S:
            self._sent.popleft()
        delay = max(0.0, self._paused_until - now)
        rpm = self.effective_rpm
        tpm = self.tpm * self._scale * self.headroom if self.tpm else None
        if rpm is not None:
            if len(self._sent) >= int(rpm):
                delay = max(delay, self._sent[len(self._sent) - int(rpm)][0] + WINDOW_S - now)
            burst = max(1, int(rpm / 60))
            if len(self._sent) >= burst:  # pace: `burst` requests per burst/rate seconds
                delay = max(delay, self._sent[-burst][0] + burst * WINDOW_S / rpm - now)
        if tpm is not None and self._sent:
            used = sum(t for _, t in self._sent)
            excess = used + tokens - tpm
            for at, spent in self._sent:  # wait until enough old tokens leave the window
                if excess <= 0:
                    break
                delay = max(delay, at + WINDOW_S - now)
                excess -= spent
        return delay

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until one more request of `tokens` fits the limits, then count it."""
        if self.rpm is None and self.tpm is None:
            return
        async with self._lock:  # FIFO: callers are admitted in the order they asked
            while (delay := self._delay(tokens, self.clock())) > 0:
                self.waited_s += delay
                await asyncio.sleep(delay)
            self._sent.append((self.clock(), tokens))

    def on_success(self) -> None:
        self._scale = min(1.0, self._scale + self.recovery)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """The provider said 429: pause everyone and lower the ceiling."""
        self._scale = max(0.1, self._scale * self.backoff)
        pause = retry_after if retry_after is not None else 1.0
        self._paused_until = max(self._paused_until, self.clock() + pause)
