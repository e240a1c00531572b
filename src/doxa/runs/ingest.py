"""`doxa ingest` as a driver of the engine: a file's users, on this machine or on Ray.

The CLI decides nothing here; it hands over what the user asked for (an `IngestJob`) and
reports what comes back. On this machine the users of a spooled file go through
`Engine.ingest_many`, and `IngestTotals` sums each user's result as it finishes, so a file
of any size is summed in flat memory. With Ray (`doxa.runs.distributed`), the workers read
the file themselves and the summary comes back whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doxa.engine import Engine, IngestResult
from doxa.events.spool import UserSpool
from doxa.usage import Usage

if TYPE_CHECKING:  # Ray is imported only on the path that uses it
    from doxa.runs.distributed import RayIngestSummary


@dataclass(frozen=True)
class IngestJob:
    """What to ingest with: the engine's settings and how many users go at once."""

    model: str
    store: str
    base_url: str | None = None
    concurrency: int = 4
    schema: Path | None = None
    rpm: float | None = None
    tpm: float | None = None
    why: bool = False
    """Ask the why pass for causal links after each batch that yields a goal."""

    def engine_options(self) -> dict[str, Any]:
        """The optional `Engine(...)` settings that were given (Ray ships them to workers)."""
        return {k: v for k, v in {"schema": self.schema, "rpm": self.rpm,
                                  "tpm": self.tpm, "why": self.why or None}.items()
                if v is not None}


@dataclass
class IngestTotals:
    """What `doxa ingest` prints, summed as users finish: a file of any size, flat memory."""

    users: int = 0
    changes: int = 0
    dropped: int = 0
    dropped_links: int = 0
    usage: Usage = field(default_factory=Usage)

    def add(self, result: IngestResult) -> None:
        self.users += 1
        self.changes += len(result.changes)
        self.dropped += len(result.dropped)
        self.dropped_links += len(result.dropped_links)
        self.usage = self.usage + result.usage


async def ingest_spool(job: IngestJob, spool: UserSpool, totals: IngestTotals, *,
                       keep_results: bool, on_done: Callable[[str], None] | None = None,
                       ) -> dict[str, IngestResult | BaseException]:
    """Every user of the spool through one engine, `job.concurrency` at once. `totals` sums
    each finished user; `on_done(user)` follows (a progress bar). The per-user results are
    kept only with `keep_results` (a failed user's error always is)."""
    def done(user: str, result: IngestResult | BaseException) -> None:
        if isinstance(result, IngestResult):
            totals.add(result)
        if on_done is not None:
            on_done(user)

    async with Engine(model=job.model, store=job.store, base_url=job.base_url,
                      schema=job.schema, rpm=job.rpm, tpm=job.tpm, why=job.why) as engine:
        return await engine.ingest_many(spool.users(), concurrency=job.concurrency,
                                        on_done=done, keep_results=keep_results)


def ingest_on_ray(job: IngestJob, file: Path, *, address: str | None, skip_invalid: bool,
                  only_user: str | None) -> RayIngestSummary:
    """The same ingest with users spread over Ray tasks, each with its own engine."""
    from doxa.runs.distributed import ingest_ray

    return ingest_ray(file, store=job.store, model=job.model, base_url=job.base_url,
                      concurrency=job.concurrency, address=address, skip_invalid=skip_invalid,
                      only_user=only_user, engine_options=job.engine_options() or None)
