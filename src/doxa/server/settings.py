"""What a served doxa allows per request: body size, events per batch, page sizes, queueing.

Each limit is a `doxa serve` option too; the defaults suit a delivery service calling at
decision points and an event pipeline posting batches of up to a thousand events.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServerLimits(BaseModel):
    """Request limits the server enforces before any work is done."""

    model_config = ConfigDict(frozen=True)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """A larger request body is refused with 413 before it is read whole."""
    max_events: int = Field(default=1000, ge=1)
    """Events in one `POST .../events`; more is a 422 naming `events`."""
    default_page: int = Field(default=100, ge=1)
    """Records per page when the caller gives no `limit`."""
    max_page: int = Field(default=500, ge=1)
    """The largest `limit` a caller may ask for."""
    max_concurrent_ingests: int = Field(default=4, ge=1)
    """Ingests (LLM calls) running at once; others wait their turn."""
    max_queued_ingests: int = Field(default=64, ge=0)
    """Ingests allowed to wait; past that a request gets 503 with Retry-After."""
    read_cache_bytes: int = Field(default=64 * 2**20, ge=0)
    """Rendered model pages kept for repeated reads between commits (0: none kept)."""
