"""Provider wire formats from documented-format *fixtures* (see tests/provider_fixtures/):
a 429 is retried and then succeeds, a 401 fails at once with a hint, and the Anthropic
Messages path parses a tool_use answer. No network: an in-process HTTP transport answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from doxa.engine import Engine
from doxa.errors import ProviderAuthError, ProviderError
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionSettings
from doxa.llm.providers import build_client, parse_provider

FIXTURES = Path(__file__).parent / "provider_fixtures"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
EVENTS = [
    {"id": "e1", "type": "page_view", "timestamp": T0, "properties": {"path": "/pricing"}},
    {"id": "e2", "type": "chat_message", "timestamp": T0 + timedelta(minutes=3),
     "text": "I need to show my CFO this pays back within 6 months"},
    {"id": "e3", "type": "chat_message", "timestamp": T0 + timedelta(minutes=5),
     "text": "Please keep answers short, bullet points are best."},
]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


Handler = Callable[[httpx2.Request], httpx2.Response]


def engine_with(handler: Handler, model: str = "openai/gpt-4o-mini") -> tuple[Engine, list[Any]]:
    seen: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return handler(request)

    spec = parse_provider(model)
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(record))
    client = build_client(spec, api_key="test-key", http_client=http)
    # One documented answer per fixture, so no re-ask: e3's standing request, which the
    # fixture's answer does not cite, would otherwise be asked about again.
    engine = Engine(model=model, store="memory://", client=client,
                    retry=RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05),
                    settings=ExtractionSettings(reasks=0))
    return engine, seen


async def test_a_429_with_retry_after_is_retried_then_succeeds() -> None:
    answers = [
        httpx2.Response(429, json=fixture("openai_error_429.json"),
                        headers={"retry-after": "0.01"}),
        httpx2.Response(200, json=fixture("openai_chat_completion_tool_call.json")),
    ]
    engine, seen = engine_with(lambda _r: answers.pop(0))
    result = await engine.ingest("u1", EVENTS)
    assert len(seen) == 2
    assert result.llm_calls == 1
    assert (result.input_tokens, result.output_tokens) == (812, 96)
    assert result.cost_usd == pytest.approx((812 * 0.15 + 96 * 0.60) / 1e6)
    [goal] = (await engine.model("u1")).goals()
    assert goal.statement == "Wants to show their CFO the product pays back within 6 months"
    assert [e.event_id for e in goal.evidence] == ["e2"]


async def test_a_401_fails_at_once_with_what_to_fix_and_stores_nothing() -> None:
    refuse = httpx2.Response(401, json=fixture("openai_error_401.json"))
    engine, seen = engine_with(lambda _r: refuse)
    with pytest.raises(ProviderAuthError, match="OPENAI_API_KEY") as exc:
        await engine.ingest("u1", EVENTS)
    assert exc.value.status == 401 and not exc.value.retryable
    assert len(seen) == 1
    assert await engine.store.processed("u1", ["e1", "e2", "e3"]) == set()
    assert len(await engine.model("u1")) == 0


async def test_5xx_every_time_ends_in_a_typed_retryable_error_after_bounded_attempts() -> None:
    engine, seen = engine_with(lambda _r: httpx2.Response(503, json={"error": {"message": "busy"}}))
    with pytest.raises(ProviderError) as exc:
        await engine.ingest("u1", EVENTS)
    assert exc.value.retryable and exc.value.status == 503
    assert len(seen) == 4
    assert await engine.store.processed("u1", ["e2"]) == set()


async def test_the_anthropic_messages_path_parses_tool_use_and_marks_the_system_cacheable() -> None:
    engine, seen = engine_with(
        lambda _r: httpx2.Response(200, json=fixture("anthropic_messages_tool_use.json")),
        model="anthropic/claude-haiku-4-5",
    )
    result = await engine.ingest("u1", EVENTS)
    assert seen[0].url.path.endswith("/v1/messages")
    body = json.loads(seen[0].content)
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["max_tokens"] > 0 and "temperature" not in body
    assert body["tool_choice"]["type"] == "tool"
    assert (result.input_tokens, result.output_tokens) == (901, 88)
    [pref] = (await engine.model("u1")).preferences()
    assert pref.statement == "Prefers short answers in bullet points"
    assert pref.evidence[0].basis == "explicit"
