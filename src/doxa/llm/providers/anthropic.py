"""Anthropic's Messages API: `anthropic/<model>`.

The SDK's own environment variables apply (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`). The
system text goes first and is marked cacheable, so provider prompt caching applies to the
part every call of a run shares; the SDK takes no `temperature`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

from doxa.llm.batch_api import Answer, JobStatus, SDKBatches, sdk_call
from doxa.llm.providers.base import Prompt, Provider, ProviderSpec


class AnthropicBatches(SDKBatches):
    """Anthropic's Message Batches: 100,000 requests and 256 MB per batch, 24 h window.

    `messages.batches.create`; results streamed from `results_url`, one `{"custom_id",
    "result": {"type", "message"}}` line per request."""

    max_requests = 100_000
    max_bytes = 240 * 1024 * 1024

    def line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": body}

    async def submit(self, path: Path, tag: str) -> str:
        with path.open("rb") as fh:
            requests = [json.loads(raw) for raw in fh if raw.strip()]
        job = await sdk_call(self.client.messages.batches.create(requests=requests))
        return str(job.id)

    async def find(self, tag: str) -> str | None:
        return None  # Message Batches carry no metadata to find a job by

    async def status(self, job_id: str) -> JobStatus:
        job = await sdk_call(self.client.messages.batches.retrieve(job_id))
        c = job.request_counts
        done = c.succeeded + c.errored + c.canceled + c.expired
        return JobStatus(ended=job.processing_status == "ended",
                         status=str(job.processing_status), done=done, total=done + c.processing)

    async def results(self, job_id: str) -> dict[str, Answer]:
        answers: dict[str, Answer] = {}
        stream = await sdk_call(self.client.messages.batches.results(job_id))
        async for item in stream:
            result = item.result
            if result.type == "succeeded":
                answers[item.custom_id] = result.message
            elif result.type == "errored":
                answers[item.custom_id] = f"errored: {result.error.error.message}"
            else:
                answers[item.custom_id] = str(result.type)
        return answers


class AnthropicProvider(Provider):
    """Anthropic's Messages, through the `anthropic` SDK and instructor's TOOLS mode."""

    name = "anthropic"
    key_variable = "ANTHROPIC_API_KEY"
    base_url_variable = "ANTHROPIC_BASE_URL"
    instructor_provider = "anthropic"
    usage_fields = ("input_tokens", "output_tokens")
    batches = AnthropicBatches
    prices = MappingProxyType({
        "claude-3-5-haiku-latest": (0.80, 4.00), "claude-haiku-4-5": (1.00, 5.00),
        "claude-sonnet-4-5": (3.00, 15.00), "claude-sonnet-4-0": (3.00, 15.00),
        "claude-opus-4-1": (15.00, 75.00),
    })

    def client(self, spec: ProviderSpec, api_key: str, *, timeout_s: float,
               http_client: Any | None) -> Any:
        import anthropic
        import instructor

        sdk = anthropic.AsyncAnthropic(api_key=api_key, base_url=spec.base_url,
                                       timeout=timeout_s, max_retries=0, http_client=http_client)
        return instructor.from_anthropic(sdk, mode=instructor.Mode.TOOLS)

    def request(self, model: str, prompt: Prompt) -> dict[str, Any]:
        request: dict[str, Any] = {"model": model, "max_tokens": prompt.max_tokens}
        if prompt.timeout_s is not None:
            request["timeout"] = prompt.timeout_s
        if prompt.system is not None:
            request["system"] = [{"type": "text", "text": prompt.system,
                                  "cache_control": {"type": "ephemeral"}}]
        request["messages"] = [{"role": "user", "content": prompt.user}]
        return request
