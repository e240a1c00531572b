"""Provider strings → the provider that speaks for them: the registry, doxa's one front door.

`openai/<model>`, `anthropic/<model>` and `ollama/<model>` are registered below, one line
each; any other OpenAI-compatible server (vLLM, llama.cpp) is `openai/<model>` with a base
URL. The rest of doxa asks only this module: `parse_provider` for a spec,
`require_credentials` before any input is read, `build_client` for the client. A new
provider is a `Provider` subclass in a module of its own and one `register(...)` call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from doxa.errors import ConfigError
from doxa.llm.providers.anthropic import AnthropicProvider
from doxa.llm.providers.base import (
    BATCH_DISCOUNT,
    DEFAULT_TIMEOUT_S,
    Price,
    Prompt,
    Provider,
    ProviderSpec,
)
from doxa.llm.providers.ollama import OllamaProvider
from doxa.llm.providers.openai import OpenAIProvider

__all__ = [
    "BATCH_DISCOUNT",
    "PROVIDERS",
    "Price",
    "Prompt",
    "Provider",
    "ProviderRegistry",
    "ProviderSpec",
    "build_client",
    "parse_provider",
    "register",
    "require_credentials",
    "unregister",
]

ANY_OPENAI_COMPATIBLE = "openai/<model> with base_url=, --base-url on the command line"


class ProviderRegistry:
    """The providers doxa knows, by the name that prefixes their provider strings."""

    def __init__(self) -> None:
        self._by_name: dict[str, Provider] = {}

    def register(self, provider: Provider) -> Provider:
        """Make `name/<model>` strings mean `provider`; a name is registered once."""
        if provider.name in self._by_name:
            raise ConfigError(f"a provider named '{provider.name}' is registered already")
        self._by_name[provider.name] = provider
        return provider

    def unregister(self, name: str) -> None:
        """Forget the provider registered as `name` (a test's, a plugin's)."""
        if self._by_name.pop(name, None) is None:
            raise ConfigError(f"no provider named '{name}' is registered")

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def parse(self, model: str, base_url: str | None = None) -> ProviderSpec:
        """Read `openai/gpt-4o-mini`, `anthropic/claude-haiku-4-5`, `ollama/llama3.1`."""
        name, sep, model_name = model.partition("/")
        if not sep or not model_name:
            raise ConfigError(
                f"model '{model}' needs a provider prefix: "
                f"{_either(f'{n}/<model>' for n in self.names())} "
                f"(any OpenAI-compatible server: {ANY_OPENAI_COMPATIBLE})")
        provider = self._by_name.get(name)
        if provider is None:
            raise ConfigError(
                f"unknown provider '{name}' in '{model}'; use "
                f"{_either(f'{n}/' for n in self.names())} (for vLLM, llama.cpp or another "
                f"OpenAI-compatible server: {ANY_OPENAI_COMPATIBLE})")
        return provider.spec(model_name, base_url)


PROVIDERS = ProviderRegistry()
PROVIDERS.register(OpenAIProvider())
PROVIDERS.register(AnthropicProvider())
PROVIDERS.register(OllamaProvider())


def register(provider: Provider) -> Provider:
    """Register `provider` with doxa's registry: `name/<model>` works everywhere after."""
    return PROVIDERS.register(provider)


def unregister(name: str) -> None:
    PROVIDERS.unregister(name)


def parse_provider(model: str, base_url: str | None = None) -> ProviderSpec:
    """The spec a provider string names, e.g. `openai/gpt-4o-mini`."""
    return PROVIDERS.parse(model, base_url)


def require_credentials(spec: ProviderSpec, api_key: str | None = None) -> str:
    """The key to send, or `MissingCredentialsError` naming the ways forward.

    Cheap and offline, so commands call it before reading input or opening a store: a
    missing key must not cost a user a parsed file and a fresh, empty `doxa.db`."""
    return spec.provider.api_key(spec, api_key)


def build_client(spec: ProviderSpec, *, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, http_client: Any | None = None) -> Any:
    """An async instructor client for the spec; SDK retries off (doxa's tenacity retries)."""
    return spec.provider.client(spec, require_credentials(spec, api_key), timeout_s=timeout,
                                http_client=http_client)


def _either(options: Iterable[str]) -> str:
    """`a, b or c`."""
    listed = list(options)
    return listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} or {listed[-1]}"
