"""HTTP recordings (vcrpy cassettes) of real LLM traffic, scrubbed of secrets.

Used by `doxa demo` to replay a real extraction without a key or network, and by the tests
and `scripts/record-cassettes` to record and replay. A cassette sits beside a `.meta.json`
that says which model and server produced it, so a replay asks for exactly the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

RecordMode = Literal["none", "once", "all", "new_episodes"]

SECRET_REQUEST_HEADERS = (
    "authorization", "x-api-key", "api-key", "openai-organization", "openai-project",
    "anthropic-organization-id", "cookie",
)
SECRET_RESPONSE_HEADERS = frozenset({
    "set-cookie", "openai-organization", "openai-project", "anthropic-organization-id",
    "request-id", "x-request-id", "cf-ray", "cookie", "authorization", "x-api-key",
})


class CassetteMeta(BaseModel):
    """What produced a recording; a replay must ask for the same model."""

    model: str
    base_url: str | None = None
    recorded_with: str = ""


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """Drop response headers that identify an account, a session or a request."""
    headers = response.get("headers") or {}
    response["headers"] = {
        k: v for k, v in headers.items() if k.lower() not in SECRET_RESPONSE_HEADERS
    }
    return response


def make_vcr(record_mode: RecordMode = "none") -> Any:
    """A VCR that matches on method, path and the exact body, so a changed prompt cannot
    silently replay an old answer, and never records a secret."""
    import vcr

    return vcr.VCR(
        record_mode=record_mode,
        match_on=["method", "path", "query", "body"],
        filter_headers=list(SECRET_REQUEST_HEADERS),
        before_record_response=scrub_response,
        decode_compressed_response=True,
    )


def meta_path(cassette: Path) -> Path:
    return cassette.with_suffix(".meta.json")


def read_meta(cassette: Path) -> CassetteMeta:
    return CassetteMeta.model_validate_json(meta_path(cassette).read_text(encoding="utf-8"))


def write_meta(cassette: Path, meta: CassetteMeta) -> None:
    meta_path(cassette).write_text(json.dumps(meta.model_dump(), indent=2) + "\n",
                                   encoding="utf-8")


@contextmanager
def cassette(path: Path, record_mode: RecordMode = "none") -> Iterator[Any]:
    """Use a cassette; in replay, fail if the code made a request that was not recorded."""
    with make_vcr(record_mode).use_cassette(str(path), allow_playback_repeats=False) as cas:
        yield cas
