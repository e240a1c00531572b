"""OpenAI, and any server that speaks its chat-completions wire: `openai/<model>`.

The SDK's own environment variables apply (`OPENAI_API_KEY`, `OPENAI_BASE_URL`); a server
at a base URL of the user's choosing (vLLM, llama.cpp, a gateway) may need no key at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

from doxa.llm.batch_api import Answer, JobStatus, SDKBatches, sdk_call
from doxa.llm.providers.base import Prompt, Provider, ProviderSpec

ENDPOINT = "/v1/chat/completions"
NO_KEY = "not-needed"
"""What is sent as the key to a server at a chosen base URL: local servers ignore it."""


class OpenAIBatches(SDKBatches):
    """OpenAI's Batch API: 50,000 requests and 200 MB per input file, 24 h window.

    `files.create(purpose="batch")` + `batches.create`; results in an output file and an
    error file, one `{"custom_id", "response": {"status_code", "body"}}` line per request."""

    max_requests = 50_000
    max_bytes = 190 * 1024 * 1024

    def line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}

    async def submit(self, path: Path, tag: str) -> str:
        with path.open("rb") as fh:
            uploaded = await sdk_call(self.client.files.create(
                file=(path.name, fh, "application/jsonl"), purpose="batch"))
        job = await sdk_call(self.client.batches.create(
            input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
            metadata={"doxa_backfill": tag}))
        return str(job.id)

    async def find(self, tag: str) -> str | None:
        page = await sdk_call(self.client.batches.list(limit=100))
        for job in page.data:
            if (job.metadata or {}).get("doxa_backfill") == tag:
                return str(job.id)
        return None

    async def status(self, job_id: str) -> JobStatus:
        job = await sdk_call(self.client.batches.retrieve(job_id))
        counts = job.request_counts
        failure = None
        if job.status == "failed":
            errors = job.errors.data if job.errors and job.errors.data else []
            failure = "batch failed: " + ("; ".join(
                f"line {e.line}: {e.message}" if e.line else str(e.message)
                for e in errors[:5]) or "no reason given")
        elif job.status == "cancelled":
            failure = "batch was cancelled"
        return JobStatus(
            ended=job.status in ("completed", "failed", "expired", "cancelled"),
            status=str(job.status), done=(counts.completed + counts.failed) if counts else 0,
            total=counts.total if counts else 0, failure=failure)

    async def results(self, job_id: str) -> dict[str, Answer]:
        from openai.types.chat import ChatCompletion

        job = await sdk_call(self.client.batches.retrieve(job_id))
        answers: dict[str, Answer] = {}
        for file_id in (job.output_file_id, job.error_file_id):
            if not file_id:
                continue
            content = await sdk_call(self.client.files.content(file_id))
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                item = json.loads(raw)
                response = item.get("response") or {}
                if response.get("status_code") == 200:
                    answers[item["custom_id"]] = ChatCompletion.model_validate(response["body"])
                else:
                    answers[item["custom_id"]] = _reason(item, response)
        return answers


class OpenAIProvider(Provider):
    """OpenAI's chat completions, through the `openai` SDK and instructor's TOOLS mode."""

    name = "openai"
    key_variable = "OPENAI_API_KEY"
    base_url_variable = "OPENAI_BASE_URL"
    instructor_provider = "openai"
    usage_fields = ("prompt_tokens", "completion_tokens")
    batches = OpenAIBatches
    prices = MappingProxyType({
        "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00),
        "gpt-4.1": (2.00, 8.00), "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1-nano": (0.10, 0.40),
        "gpt-5": (1.25, 10.00), "gpt-5-mini": (0.25, 2.00), "gpt-5-nano": (0.05, 0.40),
    })

    def api_key(self, spec: ProviderSpec, api_key: str | None = None) -> str:
        """The key to send; a server at a chosen base URL may need none."""
        key = api_key or os.environ.get(self.key_variable)
        if key is None and spec.base_url:
            return NO_KEY
        return super().api_key(spec, key)

    def client(self, spec: ProviderSpec, api_key: str, *, timeout_s: float,
               http_client: Any | None) -> Any:
        return openai_client(spec, api_key, timeout_s=timeout_s, http_client=http_client)

    def request(self, model: str, prompt: Prompt) -> dict[str, Any]:
        system = [] if prompt.system is None else [{"role": "system", "content": prompt.system}]
        request: dict[str, Any] = {
            "model": model, "messages": [*system, {"role": "user", "content": prompt.user}],
            "temperature": prompt.temperature, "max_tokens": prompt.max_tokens}
        if prompt.timeout_s is not None:
            request["timeout"] = prompt.timeout_s
        return request


def openai_client(spec: ProviderSpec, api_key: str, *, timeout_s: float,
                  http_client: Any | None) -> Any:
    """An async instructor client (TOOLS mode) over the `openai` SDK, its retries off: for
    OpenAI and for any provider that speaks its wire."""
    import instructor
    import openai

    sdk = openai.AsyncOpenAI(api_key=api_key, base_url=spec.base_url, timeout=timeout_s,
                             max_retries=0, http_client=http_client)
    return instructor.from_openai(sdk, mode=instructor.Mode.TOOLS)


def _reason(item: dict[str, Any], response: dict[str, Any]) -> str:
    error = item.get("error") or (response.get("body") or {}).get("error") or {}
    code = error.get("code") or (f"HTTP {response['status_code']}" if response else "error")
    return f"{code}: {error.get('message') or 'no message'}"
