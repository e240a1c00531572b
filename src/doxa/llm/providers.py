"""Provider strings → instructor clients, and what each model's tokens cost.

`openai/<model>` and `anthropic/<model>` use the SDKs' own environment variables
(`OPENAI_API_KEY`, `OPENAI_BASE_URL`, `ANTHROPIC_API_KEY`). Any OpenAI-compatible server
(Ollama, vLLM, llama.cpp) is `openai/<model>` with a base URL, or `ollama/<model>`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from doxa.errors import ConfigError, MissingCredentialsError

Wire = Literal["openai", "anthropic"]

# USD per million tokens (input, output), from the providers' public price pages.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-opus-4-1": (15.00, 75.00),
}

BATCH_DISCOUNT = 0.5
"""OpenAI's Batch API and Anthropic's Message Batches bill half the online price per token."""

OLLAMA_DEFAULT = "http://localhost:11434/v1"


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider string names: the wire format, the model and where to send it."""

    name: str
    wire: Wire
    model: str
    base_url: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}/{self.model}"

    def cost(self, input_tokens: int, output_tokens: int, *,
             batch: bool = False) -> float | None:
        """USD for these tokens, 0 for a local server, None when the price is unknown;
        `batch` applies the batch APIs' discount."""
        if self.name == "ollama" or _is_loopback(self.base_url):
            return 0.0
        price = PRICES.get(self.model) or next(
            (p for m, p in PRICES.items() if self.model.startswith(m + "-")), None
        )
        if price is None:
            return None
        factor = BATCH_DISCOUNT if batch else 1.0
        return round(factor * (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000, 9)


def _is_loopback(url: str | None) -> bool:
    return bool(url) and any(h in str(url) for h in ("://127.", "://localhost", "://[::1]"))


def parse_provider(model: str, base_url: str | None = None) -> ProviderSpec:
    """Read `openai/gpt-4o-mini`, `anthropic/claude-haiku-4-5`, `ollama/llama3.1`."""
    name, sep, model_name = model.partition("/")
    if not sep or not model_name:
        raise ConfigError(
            f"model '{model}' needs a provider prefix: openai/<model>, anthropic/<model> or "
            "ollama/<model> (any OpenAI-compatible server: openai/<model> with base_url=, "
            "--base-url on the command line)"
        )
    if name == "openai":
        return ProviderSpec("openai", "openai", model_name,
                            base_url or os.environ.get("OPENAI_BASE_URL"))
    if name == "anthropic":
        return ProviderSpec("anthropic", "anthropic", model_name,
                            base_url or os.environ.get("ANTHROPIC_BASE_URL"))
    if name == "ollama":
        host = os.environ.get("OLLAMA_HOST")
        default = f"{host.rstrip('/')}/v1" if host else OLLAMA_DEFAULT
        return ProviderSpec("ollama", "openai", model_name, base_url or default)
    raise ConfigError(
        f"unknown provider '{name}' in '{model}'; use openai/, anthropic/ or ollama/ "
        "(for vLLM, llama.cpp or another OpenAI-compatible server: openai/<model> with "
        "base_url=, --base-url on the command line)"
    )


def require_credentials(spec: ProviderSpec, api_key: str | None = None) -> str:
    """The key to send, or `MissingCredentialsError` naming the ways forward.

    Cheap and offline, so commands call it before reading input or opening a store: a
    missing key must not cost a user a parsed file and a fresh, empty `doxa.db`."""
    env_var = "OPENAI_API_KEY" if spec.wire == "openai" else "ANTHROPIC_API_KEY"
    key = api_key or os.environ.get(env_var)
    if key is None and spec.wire == "openai" and spec.base_url:
        key = "not-needed"  # local OpenAI-compatible servers ignore the key
    if key is None:
        raise MissingCredentialsError(spec.label, env_var)
    return key


def build_client(spec: ProviderSpec, *, api_key: str | None = None, timeout: float = 120.0,
                 http_client: Any | None = None) -> Any:
    """An async instructor client for the spec; SDK retries off (doxa's tenacity retries)."""
    import instructor

    if spec.wire == "openai":
        import openai

        key = require_credentials(spec, api_key)
        oa = openai.AsyncOpenAI(api_key=key, base_url=spec.base_url, timeout=timeout,
                                max_retries=0, http_client=http_client)
        return instructor.from_openai(oa, mode=instructor.Mode.TOOLS)
    import anthropic

    key = require_credentials(spec, api_key)
    ac = anthropic.AsyncAnthropic(api_key=key, base_url=spec.base_url, timeout=timeout,
                                  max_retries=0, http_client=http_client)
    return instructor.from_anthropic(ac, mode=instructor.Mode.TOOLS)
