"""Ollama: `ollama/<model>`, OpenAI's wire on the user's own machine (or `OLLAMA_HOST`).

Everything but the address and the price is OpenAI's: the same SDK, request shape, token
counts and key handling (no key needed). Tokens cost nothing: the hardware is the user's.
"""

from __future__ import annotations

import os

from doxa.llm.providers.base import Price, ProviderSpec
from doxa.llm.providers.openai import OpenAIProvider

DEFAULT_URL = "http://localhost:11434/v1"
FREE: Price = (0.0, 0.0)


class OllamaProvider(OpenAIProvider):
    """An Ollama server's OpenAI-compatible endpoint."""

    name = "ollama"

    def spec(self, model: str, base_url: str | None = None) -> ProviderSpec:
        host = os.environ.get("OLLAMA_HOST")
        default = f"{host.rstrip('/')}/v1" if host else DEFAULT_URL
        return ProviderSpec(self, model, base_url or default)

    def price(self, model: str) -> Price:
        return FREE
