"""What a provider is to doxa: one shape every provider module fills in.

A provider turns `name/model` into a client (credentials and base URL from its own
environment variables), lays out one request on its wire, reads the tokens its answers
report, prices them, and submits batch jobs. Nothing outside the provider modules asks which
provider it is talking to: a new one is a `Provider` subclass and one `register(...)` line.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from doxa.errors import ConfigError, MissingCredentialsError
from doxa.llm.batch_api import SDK_RETRIES, SDK_TIMEOUT_S, BatchAPI, SDKBatches
from doxa.usage import Usage

Price = tuple[float, float]
"""USD per million tokens: (input, output)."""

BATCH_DISCOUNT = 0.5
"""OpenAI's Batch API and Anthropic's Message Batches bill half the online price per token."""

DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Prompt:
    """What one call asks, in no provider's terms: the texts and the settings that shape the
    answer. `timeout_s` None leaves the client's own timeout."""

    user: str
    system: str | None = None
    max_tokens: int = 2048
    temperature: float = 0.0
    timeout_s: float | None = None


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider string names: the provider that speaks for it, the model and where to
    send it."""

    provider: Provider
    model: str
    base_url: str | None = None

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def label(self) -> str:
        return f"{self.name}/{self.model}"

    def cost(self, input_tokens: int, output_tokens: int, *,
             batch: bool = False) -> float | None:
        """USD for these tokens, 0 for a local server, None when the price is unknown;
        `batch` applies the batch APIs' discount."""
        return self.provider.cost(self, input_tokens, output_tokens, batch=batch)

    def priced(self, usage: Usage, *, batch: bool = False) -> Usage:
        """`usage` with the cost of its tokens at this model's price."""
        return usage.model_copy(update={
            "cost_usd": self.cost(usage.input_tokens, usage.output_tokens, batch=batch)})

    def batch_api(self, sdk_client: Any) -> BatchAPI:
        """The provider's batch API over its raw SDK client (`engine.extractor.client.client`),
        with the SDK's own retries on: status polls and downloads are idempotent."""
        return self.provider.batch_api(
            sdk_client.with_options(max_retries=SDK_RETRIES, timeout=SDK_TIMEOUT_S))


class Provider(ABC):
    """One provider: a subclass per provider module, registered once under `name`."""

    name: ClassVar[str]
    """The prefix of its provider strings: `name/model`."""
    key_variable: ClassVar[str]
    """The environment variable its SDK reads the API key from."""
    base_url_variable: ClassVar[str | None] = None
    """The environment variable its SDK reads the base URL from, if any."""
    prices: ClassVar[Mapping[str, Price]] = MappingProxyType({})
    """Per model (a dated version `gpt-4o-2024-08-06` is priced as `gpt-4o`), from the
    provider's public price page."""
    instructor_provider: ClassVar[str] = "openai"
    """instructor's name for the wire, for its request and response handlers (OpenAI's
    unless said otherwise: the wire most servers speak)."""
    usage_fields: ClassVar[tuple[str, str]] = ("prompt_tokens", "completion_tokens")
    """Where its responses report tokens: `response.usage.<input>`, `.<output>` (OpenAI's
    names unless said otherwise)."""
    batches: ClassVar[type[SDKBatches] | None] = None
    """Its batch API over its SDK client, if it has one."""

    def spec(self, model: str, base_url: str | None = None) -> ProviderSpec:
        """The spec for `model`, sent to `base_url` or the provider's environment's choice."""
        default = os.environ.get(self.base_url_variable) if self.base_url_variable else None
        return ProviderSpec(self, model, base_url or default)

    def api_key(self, spec: ProviderSpec, api_key: str | None = None) -> str:
        """The key to send, or `MissingCredentialsError` naming the ways forward."""
        key = api_key or os.environ.get(self.key_variable)
        if key is None:
            raise MissingCredentialsError(spec.label, self.key_variable)
        return key

    @abstractmethod
    def client(self, spec: ProviderSpec, api_key: str, *, timeout_s: float,
               http_client: Any | None) -> Any:
        """An async instructor client for the spec, its SDK's own retries off (doxa retries
        with tenacity, see `doxa.llm.client.RetryPolicy`)."""

    @abstractmethod
    def request(self, model: str, prompt: Prompt) -> dict[str, Any]:
        """The keyword arguments of one call on this provider's wire (instructor adds the
        tool and the response model)."""

    def usage(self, response: Any) -> Usage:
        """One call and the tokens its SDK response reports (none when it reports none)."""
        reported = getattr(response, "usage", None)
        input_field, output_field = self.usage_fields
        return Usage(llm_calls=1,
                     input_tokens=int(getattr(reported, input_field, 0) or 0),
                     output_tokens=int(getattr(reported, output_field, 0) or 0))

    def handlers(self, client: Any) -> Any:
        """instructor's request and response handlers for `client` (TOOLS mode), to build a
        request body or parse an answer obtained elsewhere (a batch API)."""
        from instructor import Mode
        from instructor.v2.core.providers import Provider as Wire
        from instructor.v2.core.registry import mode_registry

        wire = getattr(client, "provider", None) or Wire(self.instructor_provider)
        return mode_registry.get_handlers(wire, getattr(client, "mode", Mode.TOOLS))

    def batch_api(self, sdk_client: Any) -> BatchAPI:
        """The provider's batch API over its SDK client, or a ConfigError when it has none."""
        if self.batches is None:
            raise ConfigError(f"provider '{self.name}' has no batch API; run without "
                              "--batch-api")
        return self.batches(sdk_client)

    def price(self, model: str) -> Price | None:
        """The model's price, or None when it is not in the table."""
        return self.prices.get(model) or next(
            (p for m, p in self.prices.items() if model.startswith(m + "-")), None)

    def cost(self, spec: ProviderSpec, input_tokens: int, output_tokens: int, *,
             batch: bool = False) -> float | None:
        """USD for these tokens: 0 on a local server, None when the price is unknown."""
        if is_loopback(spec.base_url):
            return 0.0
        price = self.price(spec.model)
        if price is None:
            return None
        factor = BATCH_DISCOUNT if batch else 1.0
        return round(factor * (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000, 9)


def is_loopback(url: str | None) -> bool:
    """Whether `url` is a server on this machine (local inference costs nothing)."""
    return bool(url) and any(h in str(url) for h in ("://127.", "://localhost", "://[::1]"))

