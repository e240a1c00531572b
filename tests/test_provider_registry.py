"""A new provider is one class and one registry line.

`AcmeProvider` below exists only in this test: a made-up hosted provider that speaks
OpenAI's wire with quirks of its own (the system text as a `developer` message, no
temperature, its own key variable, base-URL variable and prices). Registered with one
`register(...)` call, `acme/<model>` then works everywhere doxa takes a provider string;
here it runs a whole ingest against the fake provider, nothing else in doxa touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from doxa.engine import Engine
from doxa.errors import ConfigError, MissingCredentialsError
from doxa.llm.client import RetryPolicy
from doxa.llm.providers import (
    Prompt,
    Provider,
    ProviderSpec,
    parse_provider,
    register,
    require_credentials,
    unregister,
)
from doxa.llm.providers.openai import openai_client
from doxa.testing.fake_provider import FakeProvider
from doxa.usage import Usage

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
EVENTS: list[dict[str, Any]] = [
    {"id": "a1", "type": "page_view", "timestamp": T0.isoformat(),
     "properties": {"path": "/pricing"}},
    {"id": "a2", "type": "chat_message", "timestamp": (T0 + timedelta(minutes=1)).isoformat(),
     "text": "We plan to roll this out to forty stores"},
    {"id": "a3", "type": "chat_message", "timestamp": (T0 + timedelta(minutes=4)).isoformat(),
     "text": "I would rather get a weekly digest than daily emails"},
]


class AcmeProvider(Provider):
    """Acme's chat API: OpenAI's wire, a `developer` role for instructions, no temperature."""

    name = "acme"
    key_variable = "ACME_API_KEY"
    base_url_variable = "ACME_BASE_URL"
    prices = MappingProxyType({"acme-1": (1.00, 3.00)})

    def client(self, spec: ProviderSpec, api_key: str, *, timeout_s: float,
               http_client: Any | None) -> Any:
        return openai_client(spec, api_key, timeout_s=timeout_s, http_client=http_client)

    def request(self, model: str, prompt: Prompt) -> dict[str, Any]:
        instructions = ([] if prompt.system is None
                        else [{"role": "developer", "content": prompt.system}])
        return {"model": model, "max_tokens": prompt.max_tokens,
                "messages": [*instructions, {"role": "user", "content": prompt.user}]}

    def usage(self, response: Any) -> Usage:
        reported = response.usage
        return Usage(llm_calls=1, input_tokens=reported.prompt_tokens,
                     output_tokens=reported.total_tokens - reported.prompt_tokens)


@pytest.fixture
def acme() -> Iterator[Provider]:
    provider = register(AcmeProvider())
    yield provider
    unregister("acme")


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = await FakeProvider(keep_bodies=True).start()
    yield provider
    await provider.stop()


async def test_a_provider_registered_in_the_test_suite_runs_an_ingest(
        acme: Provider, fake: FakeProvider) -> None:
    engine = Engine(model="acme/acme-1", store="memory://", base_url=fake.base_url,
                    api_key="acme-key", retry=RetryPolicy(attempts=2, backoff_base=0.01))
    try:
        result = await engine.ingest("u1", EVENTS)
        model = await engine.model("u1")
    finally:
        await engine.close()
    assert result.model == "acme/acme-1"
    assert sorted(r.kind for r in model.records) == ["goal", "preference"]
    [body] = fake.stats.bodies  # the request is laid out by AcmeProvider.request
    assert [m["role"] for m in body["messages"]] == ["developer", "user"]
    assert body["model"] == "acme-1" and "temperature" not in body
    # counted by AcmeProvider.usage, priced by its table: free on this loopback server
    assert (result.llm_calls, result.input_tokens, result.output_tokens) == (
        1, fake.stats.input_tokens, fake.stats.output_tokens)
    assert result.cost_usd == 0.0


def test_the_registered_provider_brings_its_credentials_address_and_prices(
        acme: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_API_KEY", raising=False)
    monkeypatch.setenv("ACME_BASE_URL", "https://api.acme.example/v1")
    spec = parse_provider("acme/acme-1-2026-01-01")
    assert (spec.provider, spec.base_url) == (acme, "https://api.acme.example/v1")
    with pytest.raises(MissingCredentialsError, match="ACME_API_KEY"):
        require_credentials(spec)
    monkeypatch.setenv("ACME_API_KEY", "k")
    assert require_credentials(spec) == "k"
    assert spec.cost(1_000_000, 1_000_000) == 4.0  # a dated version at its model's price
    assert spec.cost(1_000_000, 1_000_000, batch=True) == 2.0
    assert parse_provider("acme/unknown", "https://api.acme.example/v1").cost(1, 1) is None
    with pytest.raises(ConfigError, match="no batch API"):
        spec.provider.batch_api(object())


def test_registering_a_name_twice_is_refused_and_unregistered_names_are_unknown(
        acme: Provider) -> None:
    with pytest.raises(ConfigError, match="'acme' is registered already"):
        register(AcmeProvider())
    with pytest.raises(ConfigError, match=r"use openai/, anthropic/, ollama/ or acme/"):
        parse_provider("nobody/model")
    unregister("acme")
    try:
        with pytest.raises(ConfigError, match="unknown provider 'acme'"):
            parse_provider("acme/acme-1")
    finally:
        register(acme)
