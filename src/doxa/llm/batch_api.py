"""The providers' batch APIs behind one small shape: submit a file of requests, poll, collect.

OpenAI's Batch API (`files.create(purpose="batch")` + `batches.create`, results in an
output file and an error file) and Anthropic's Message Batches (`messages.batches.create`,
results streamed from `results_url`) differ in every detail; `backfill.py` sees only
`BatchAPI`: a request line per custom id, a job id, a `JobStatus`, and per custom id either
the SDK's own response object (parsed later exactly like an online answer) or the reason
there is none.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from doxa.llm.provider_errors import provider_error
from doxa.llm.providers import ProviderSpec

log = logging.getLogger(__name__)

OPENAI_ENDPOINT = "/v1/chat/completions"
SDK_RETRIES = 4
"""Status polls and downloads are idempotent; the SDKs' own retries absorb transient faults."""
SDK_TIMEOUT_S = 600.0

Answer = Any
"""A provider response object for a request (`ChatCompletion` or Anthropic `Message`), or a
`str` saying why the request has none (errored, expired, missing)."""


@dataclass(frozen=True)
class JobStatus:
    """Where a submitted job stands; `failure` is set when the whole job failed."""

    ended: bool
    status: str
    done: int
    total: int
    failure: str | None = None


class BatchAPI(Protocol):
    """One provider's batch API, as the backfill uses it."""

    max_requests: int
    max_bytes: int

    def line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The JSONL line that asks for `body` under `custom_id`."""

    async def submit(self, path: Path, tag: str) -> str:
        """Submit the JSONL file of lines as one job; returns the provider's job id."""

    async def find(self, tag: str) -> str | None:
        """The id of a job submitted with `tag`, when the provider can list them."""

    async def status(self, job_id: str) -> JobStatus:
        """The job's progress, or its failure."""

    async def results(self, job_id: str) -> dict[str, Answer]:
        """Each answered request by custom_id, once the job has ended."""


def batch_api_for(spec: ProviderSpec, sdk_client: Any) -> BatchAPI:
    """The batch API for the spec's wire format, over a raw `AsyncOpenAI`/`AsyncAnthropic`."""
    client = sdk_client.with_options(max_retries=SDK_RETRIES, timeout=SDK_TIMEOUT_S)
    return AnthropicBatches(client) if spec.wire == "anthropic" else OpenAIBatches(client)


class OpenAIBatches:
    """OpenAI's Batch API: 50,000 requests and 200 MB per input file, 24 h window."""

    max_requests = 50_000
    max_bytes = 190 * 1024 * 1024

    def __init__(self, client: Any) -> None:
        self.client = client

    def line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": OPENAI_ENDPOINT, "body": body}

    async def submit(self, path: Path, tag: str) -> str:
        with path.open("rb") as fh:
            uploaded = await _call(self.client.files.create(
                file=(path.name, fh, "application/jsonl"), purpose="batch"))
        job = await _call(self.client.batches.create(
            input_file_id=uploaded.id, endpoint=OPENAI_ENDPOINT, completion_window="24h",
            metadata={"doxa_backfill": tag}))
        return str(job.id)

    async def find(self, tag: str) -> str | None:
        page = await _call(self.client.batches.list(limit=100))
        for job in page.data:
            if (job.metadata or {}).get("doxa_backfill") == tag:
                return str(job.id)
        return None

    async def status(self, job_id: str) -> JobStatus:
        job = await _call(self.client.batches.retrieve(job_id))
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

        job = await _call(self.client.batches.retrieve(job_id))
        answers: dict[str, Answer] = {}
        for file_id in (job.output_file_id, job.error_file_id):
            if not file_id:
                continue
            content = await _call(self.client.files.content(file_id))
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                item = json.loads(raw)
                response = item.get("response") or {}
                if response.get("status_code") == 200:
                    answers[item["custom_id"]] = ChatCompletion.model_validate(response["body"])
                else:
                    answers[item["custom_id"]] = _openai_reason(item, response)
        return answers


def _openai_reason(item: dict[str, Any], response: dict[str, Any]) -> str:
    error = item.get("error") or (response.get("body") or {}).get("error") or {}
    code = error.get("code") or (f"HTTP {response['status_code']}" if response else "error")
    return f"{code}: {error.get('message') or 'no message'}"


class AnthropicBatches:
    """Anthropic's Message Batches: 100,000 requests and 256 MB per batch, 24 h window."""

    max_requests = 100_000
    max_bytes = 240 * 1024 * 1024

    def __init__(self, client: Any) -> None:
        self.client = client

    def line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": body}

    async def submit(self, path: Path, tag: str) -> str:
        with path.open("rb") as fh:
            requests = [json.loads(raw) for raw in fh if raw.strip()]
        job = await _call(self.client.messages.batches.create(requests=requests))
        return str(job.id)

    async def find(self, tag: str) -> str | None:
        return None  # Message Batches carry no metadata to find a job by

    async def status(self, job_id: str) -> JobStatus:
        job = await _call(self.client.messages.batches.retrieve(job_id))
        c = job.request_counts
        done = c.succeeded + c.errored + c.canceled + c.expired
        return JobStatus(ended=job.processing_status == "ended",
                         status=str(job.processing_status), done=done, total=done + c.processing)

    async def results(self, job_id: str) -> dict[str, Answer]:
        answers: dict[str, Answer] = {}
        stream = await _call(self.client.messages.batches.results(job_id))
        async for item in stream:
            result = item.result
            if result.type == "succeeded":
                answers[item.custom_id] = result.message
            elif result.type == "errored":
                answers[item.custom_id] = f"errored: {result.error.error.message}"
            else:
                answers[item.custom_id] = str(result.type)
        return answers


async def _call(awaitable: Any) -> Any:
    """Await an SDK call; an SDK error becomes doxa's typed `ProviderError`."""
    try:
        return await awaitable
    except Exception as exc:
        found = provider_error(exc)
        if found is None:
            raise
        raise found from exc
