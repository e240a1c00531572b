"""Every provider fault, driven through a fake provider on loopback: each ends in success
after bounded retries, or in a typed error with the batch left unprocessed; nothing
invalid is ever stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.errors import ProviderAuthError, ProviderError
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionSettings
from doxa.testing.fake_provider import FakeProvider, Fault

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
EVENTS: list[dict[str, Any]] = [
    {"id": "e1", "type": "chat_message", "timestamp": T0.isoformat(),
     "text": "We need SSO before the security review"},
    {"id": "e2", "type": "chat_message", "timestamp": (T0 + timedelta(minutes=2)).isoformat(),
     "text": "Please keep replies short and in bullets"},
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider(timeout_hang_s=5.0).start()
    yield provider
    await provider.stop()


def engine_for(fake: FakeProvider, wire: str = "openai") -> Engine:
    # The Anthropic SDK adds /v1 itself; the OpenAI SDK expects it in the base URL.
    base = fake.base_url.removesuffix("/v1") if wire == "anthropic" else fake.base_url
    return Engine(model=f"{wire}/fake", store="memory://", base_url=base,
                  api_key="x", retry=RetryPolicy(attempts=3, backoff_base=0.01,
                                                 backoff_max=0.05, max_seconds=20),
                  settings=ExtractionSettings(reasks=1, timeout_s=1.0))


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["429", "429-no-retry-after", "500", "502", "503", "timeout",
                                   "drop", "truncated", "non-json"])
async def test_a_transient_fault_then_success(fake: FakeProvider, fault: Fault,
                                              wire: str) -> None:
    fake.faults = [fault]
    engine = engine_for(fake, wire)
    result = await engine.ingest("u1", EVENTS)
    # A 200 with a garbage body is still a call the provider answered (and may bill).
    assert fake.stats.requests == 2 and result.llm_calls == (2 if fault == "non-json" else 1)
    assert len(await engine.model("u1")) == 2


@pytest.mark.parametrize("fault", ["500", "timeout", "drop", "non-json"])
async def test_the_same_fault_every_time_ends_in_a_typed_error_and_nothing_is_processed(
    fake: FakeProvider, fault: Fault,
) -> None:
    fake.faults = [fault] * 10
    engine = engine_for(fake)
    with pytest.raises(ProviderError) as exc:
        await engine.ingest("u1", EVENTS)
    # Bounded: 3 attempts, each at most one re-ask of an unparsable answer.
    assert exc.value.retryable and 3 <= fake.stats.requests <= 6
    assert await engine.store.processed("u1", ["e1", "e2"]) == set()
    fake.faults = []
    later = await engine.ingest("u1", EVENTS)  # a later run picks the batch up
    assert later.events_new == 2 and len(await engine.model("u1")) == 2


async def test_a_401_is_not_retried(fake: FakeProvider) -> None:
    fake.faults = ["401"]
    with pytest.raises(ProviderAuthError):
        await engine_for(fake).ingest("u1", EVENTS)
    assert fake.stats.requests == 1


async def test_an_answer_that_never_validates_is_dropped_and_counted(fake: FakeProvider) -> None:
    fake.faults = ["invalid", "invalid"]
    engine = engine_for(fake)
    result = await engine.ingest("u1", EVENTS)
    assert result.llm_calls == 2 and len(result.dropped) == 1
    assert "no-such-event" in result.dropped[0].reasons[0]
    assert len(await engine.model("u1")) == 0
    assert await engine.store.processed("u1", ["e1", "e2"]) == {"e1", "e2"}


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_prompt_over_the_context_is_a_typed_per_batch_error_not_a_bad_key(
    fake: FakeProvider, wire: str,
) -> None:
    """A 400 for context length says what to change and is not retried; the eval runner
    records it against its case instead of stopping the run as it does for a bad key."""
    from doxa.errors import ContextLengthError
    from doxa.eval.runner import FATAL

    fake.faults = ["context-length"]
    with pytest.raises(ContextLengthError, match="longer than the model's context") as exc:
        await engine_for(fake, wire).ingest("u1", EVENTS)
    assert fake.stats.requests == 1 and not isinstance(exc.value, FATAL)


async def test_a_reask_that_no_longer_fits_the_context_keeps_the_valid_part(
    fake: FakeProvider,
) -> None:
    """The re-ask carries the first answer and its errors, so it can outgrow the context
    when the first call fitted: the batch is then settled with the first answer's valid
    records (none here), the invalid one dropped and counted."""
    fake.faults = ["invalid", "context-length"]
    engine = engine_for(fake)
    result = await engine.ingest("u1", EVENTS)
    assert fake.stats.requests == 2 and len(result.dropped) == 1
    assert await engine.store.processed("u1", ["e1", "e2"]) == {"e1", "e2"}
