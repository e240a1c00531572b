"""The providers' batch APIs behind one small shape: submit a file of requests, poll, collect.

OpenAI's Batch API and Anthropic's Message Batches differ in every detail; each provider
module implements `BatchAPI` for its own (`ProviderSpec.batch_api` hands it out), and the
backfill sees only this shape: a request line per custom id, a job id, a `JobStatus`, and
per custom id either the SDK's own response object (parsed later exactly like an online
answer) or the reason there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from doxa.llm.provider_errors import provider_error

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


class SDKBatches(BatchAPI):
    """A batch API reached through a provider's SDK client (`ProviderSpec.batch_api` sets
    its retries and timeout); a subclass sets the limits and implements the calls."""

    def __init__(self, client: Any) -> None:
        self.client = client


async def sdk_call(awaitable: Any) -> Any:
    """Await an SDK call; an SDK error becomes doxa's typed `ProviderError`."""
    try:
        return await awaitable
    except Exception as exc:
        found = provider_error(exc)
        if found is None:
            raise
        raise found from exc
