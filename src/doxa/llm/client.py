"""The one way doxa calls an LLM: a provider's client, its request shape, one retry loop.

Extraction, the eval's LLM judge and its naive baseline all ask through an `LLMClient`, so
each gets the same things: the client `build_client` makes for the provider string, the
provider's request shape and token counts, transient errors retried with tenacity
(exponential backoff with jitter, honouring Retry-After, bounded in attempts and time),
the rate limiter when there is one, and any provider failure raised as doxa's typed
`ProviderError`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from doxa.llm.provider_errors import is_retryable, provider_error, retry_after_seconds
from doxa.llm.providers import Prompt, ProviderSpec, build_client, parse_provider
from doxa.llm.ratelimit import RateLimiter
from doxa.usage import Usage

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How transient provider errors are retried: bounded in attempts and in time."""

    attempts: int = 5
    max_seconds: float = 120.0
    backoff_base: float = 1.0
    backoff_max: float = 30.0

    def retrying(self) -> AsyncRetrying:
        """The retry loop every provider call runs in (`LLMClient.call`): transient errors
        only, bounded in attempts and time, logged."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_seconds),
            wait=self.wait, retry=retry_if_exception(is_retryable), reraise=True,
            before_sleep=_log_retry)

    def wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, or the provider's Retry-After when it gives one
        (capped at `backoff_max`)."""
        exc = state.outcome.exception() if state.outcome else None
        hinted = retry_after_seconds(exc) if exc is not None else None
        if hinted is not None:
            return min(self.backoff_max, hinted)
        return float(wait_random_exponential(multiplier=self.backoff_base,
                                             max=self.backoff_max)(state))


class UsageMeter:
    """What every response of a call reports (re-asks included), summed in the provider's
    terms; an instructor `completion:response` hook."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.total = Usage()
        self.after_first = Usage()
        """Every response but the first: what instructor's re-asks cost."""
        self._responses = 0

    def __call__(self, response: Any) -> None:
        usage = self.spec.provider.usage(response)
        self.total = self.total + usage
        if self._responses:
            self.after_first = self.after_first + usage
        self._responses += 1


@dataclass
class LLMClient:
    """One provider client and how doxa calls it: `await llm.call(attempt)`."""

    spec: ProviderSpec
    client: Any
    """The instructor client (`build_client`); its `.client` is the provider's SDK client."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: RateLimiter | None = None

    @classmethod
    def connect(cls, model: str, base_url: str | None = None, *, client: Any | None = None,
                retry: RetryPolicy | None = None) -> LLMClient:
        """The client for a provider string (`client` given: that one, as a test's fake)."""
        spec = parse_provider(model, base_url)
        return cls(spec, client if client is not None else build_client(spec),
                   retry or RetryPolicy())

    def request(self, prompt: Prompt) -> dict[str, Any]:
        """The keyword arguments that ask `prompt` on this provider's wire."""
        return self.spec.provider.request(self.spec.model, prompt)

    def meter(self) -> UsageMeter:
        return UsageMeter(self.spec)

    def usage(self, response: Any) -> Usage:
        """One call and the tokens the provider's `response` reports."""
        return self.spec.provider.usage(response)

    def handlers(self) -> Any:
        """instructor's request and response handlers for this client's provider."""
        return self.spec.provider.handlers(self.client)

    async def call(self, attempt: Callable[[], Awaitable[T]], *, tokens: int = 0) -> T:
        """`attempt()` until it succeeds or fails for good: paced by the limiter (as
        `tokens` prompt and answer tokens), transient provider errors retried; a provider
        failure raises as doxa's `ProviderError`, anything else as it was raised."""
        try:
            async for trial in self.retry.retrying():
                with trial:
                    return await self._paced(attempt, tokens)
        except Exception as exc:
            found = provider_error(exc)
            if found is None or found is exc:
                raise
            raise found from exc
        raise AssertionError("tenacity ended without a result")  # pragma: no cover

    async def _paced(self, attempt: Callable[[], Awaitable[T]], tokens: int) -> T:
        limiter = self.limiter
        if limiter is None:
            return await attempt()
        await limiter.acquire(tokens)
        try:
            result = await attempt()
        except Exception as exc:
            found = provider_error(exc)
            if found is not None and found.status == 429:
                limiter.on_rate_limited(found.retry_after)
            raise
        limiter.on_success()
        return result

    async def close(self) -> None:
        """Close the SDK client's connection pool, on the loop that used it (left to the
        garbage collector it closes after the loop has, with "Event loop is closed" noise)."""
        closing = getattr(getattr(self.client, "client", None), "close", None)
        done = closing() if callable(closing) else None
        if inspect.isawaitable(done):
            await done


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("provider call failed (%s); retry %d", exc, state.attempt_number)
