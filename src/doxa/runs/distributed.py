"""Ingest across machines: a Ray Dataset of users, every worker writing to one shared store.

`ingest_ray("events.jsonl", store="postgresql://...", model="openai/gpt-4o-mini")` reads the
file with Ray, groups it by user, and hands blocks of users to Ray tasks; each task builds
its own `Engine` against the shared store URL and ingests its users' events. Nothing is
coordinated between workers, and nothing needs to be: the store's optimistic concurrency
(a version per user, checked inside the commit's transaction) makes two tasks that touch
the same user safe, since the loser reloads and merges its extraction again, and the event
ledger makes a retried task (Ray re-runs tasks whose worker died) a no-op for the users it
had already committed.

Needs the `ray` extra: `pip install 'doxa[ray]'`. Ray is imported only when used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from doxa.engine import Engine, IngestResult
from doxa.errors import ConfigError, InvalidEventError, InvalidEventsError
from doxa.events.parse import Event, parse_event
from doxa.events.spool import MAX_REPORTED
from doxa.llm.providers import parse_provider
from doxa.usage import FlatUsage, Usage

if TYPE_CHECKING:
    from ray.data import Dataset


Batch = dict[str, np.ndarray[Any, Any]]
"""A Ray Data batch in `numpy` format: one array per column."""


class WorkerConfig(BaseModel):
    """What every Ray task needs to build its own Engine; plain data, so Ray can ship it."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model: str
    store: str
    base_url: str | None = None
    api_key: str | None = None
    concurrency: int = 4
    """Users ingested at once inside one task (LLM calls are I/O, not CPU)."""
    engine_options: dict[str, Any] = Field(default_factory=dict)
    """Further `Engine(...)` keyword arguments (`schema`, `rpm`, `retry`...); picklable."""


class RayIngestSummary(FlatUsage):
    """What a distributed ingest did, summed over every worker: counts, tokens, cost, errors."""

    rows: int = 0
    """Rows of the users dataset; a user split over several rows counts once in `users`."""
    users: int = 0
    events_new: int = 0
    batches: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    changes: int = 0
    commit_retries: int = 0
    """Commits that lost a race to another worker and were merged again (no new LLM call)."""
    workers: int = 0
    """Distinct worker processes (host:pid) that ran ingest tasks."""
    skipped_events: int = 0
    """Invalid lines left out (`skip_invalid`)."""
    errors: dict[str, str] = Field(default_factory=dict)


def require_ray() -> None:
    """Check that Ray Data imports, or raise a ConfigError that says which extra to install."""
    try:
        import ray.data  # noqa: F401  (pyarrow and pandas come with the `data` extra)
    except ImportError as exc:
        raise ConfigError(
            f"the Ray path needs Ray Data ({exc.name} is missing): pip install 'doxa[ray]'"
        ) from exc


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at `address` (e.g. `ray://head:10001` or `auto`), or start a local
    one; a Ray already initialised in this process is used as it is."""
    require_ray()
    import ray

    if ray.is_initialized():
        return
    # A local instance started on doxa's behalf reports no usage statistics unless asked to.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot start or join Ray at {address or 'local'}: {exc}") from exc


def events_dataset(paths: str | Path | Sequence[str | Path], *,
                   only_user: str | None = None) -> Dataset:
    """JSONL files (local, or any filesystem Ray reads) as a Dataset of events validated by
    Ray tasks: columns `user_id`, `event` (the event as JSON) and `error` (empty when the
    line is valid; `check_events` reports the others)."""
    require_ray()
    import ray.data

    names = [str(paths)] if isinstance(paths, str | Path) else [str(p) for p in paths]
    return ray.data.read_text(names).map_batches(
        _numpy_udf(_parse_lines), batch_format="numpy", fn_kwargs={"only_user": only_user})


def check_events(events: Dataset, *, skip_invalid: bool = False,
                 source: str | None = None) -> int:
    """How many lines are invalid; with any and not `skip_invalid`, refuse the input whole
    (InvalidEventsError naming the first ones), as `doxa ingest` does. One extra read."""
    invalid = events.map_batches(_numpy_udf(_invalid_only), batch_format="numpy")
    count = int(invalid.count())
    if count and not skip_invalid:
        # As many as the spool of `doxa ingest` keeps; the message shows the first 20.
        raise InvalidEventsError([InvalidEventError(str(row["error"]))
                                  for row in invalid.take(MAX_REPORTED)], source=source)
    return count


def users_dataset(events: Dataset, *, partitions: int | None = None) -> Dataset:
    """Group the valid rows of an events dataset by user: one row per user, `user_id` and
    `events` (JSON). `partitions` is the shuffle's width (Ray's default, 200, suits a
    cluster; a few suit a small file on one machine)."""
    valid = events.map_batches(_numpy_udf(_valid_only), batch_format="numpy")
    grouped = valid.groupby("user_id", num_partitions=partitions)
    return grouped.map_groups(_numpy_udf(_collect_user), batch_format="numpy")


def users_from(pairs: Iterable[tuple[str, Sequence[Event | Mapping[str, Any]]]]) -> Dataset:
    """A users Dataset from Python data; a user may appear in several rows (their rows
    may then run at the same time on different workers, which the store makes safe)."""
    require_ray()
    import ray.data

    rows = [{"user_id": user, "events": [_event_json(user, e) for e in events]}
            for user, events in pairs]
    return ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))


def ingest_ray(
    source: str | Path | Sequence[str | Path] | Dataset,
    *,
    store: str,
    model: str = "openai/gpt-4o-mini",
    base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int = 4,
    users_per_task: int = 32,
    workers: int | None = None,
    partitions: int | None = None,
    address: str | None = None,
    skip_invalid: bool = False,
    only_user: str | None = None,
    engine_options: Mapping[str, Any] | None = None,
) -> RayIngestSummary:
    """Ingest a JSONL file (or a users Dataset) on a Ray cluster into one shared store.

    `store` must be reachable from every worker: a `postgresql://` URL across machines (a
    SQLite file works only when every worker is on one machine). `workers` caps the Ray
    tasks running at once, `concurrency` the users in flight inside each, `partitions` the
    width of the group-by-user shuffle (see `users_dataset`). Rate limits
    (`engine_options={"rpm": ...}`) are per worker: divide the provider's limit among them.
    """
    if store.startswith("memory:"):
        raise ConfigError("memory:// is private to each Ray worker; use a postgresql:// store")
    parse_provider(model, base_url)  # a bad model string fails here, not in every task
    connect(address)
    import ray.data

    skipped = 0
    if isinstance(source, str | Path | Sequence):
        events = events_dataset(source, only_user=only_user)
        skipped = check_events(events, skip_invalid=skip_invalid, source=str(source))
        users = users_dataset(events, partitions=partitions)
    else:
        users = source
    config = WorkerConfig(model=model, store=store, base_url=base_url, api_key=api_key,
                          concurrency=concurrency, engine_options=dict(engine_options or {}))
    # One task per `users_per_task` users: a task is what Ray spreads over workers.
    blocks = users.repartition(target_num_rows_per_block=max(1, users_per_task))
    results = blocks.map_batches(
        _numpy_udf(_ingest_rows), batch_size=users_per_task, batch_format="numpy",
        fn_kwargs={"config": config}, compute=ray.data.TaskPoolStrategy(size=workers))
    summary, seen, hosts = RayIngestSummary(skipped_events=skipped), set[str](), set[str]()
    for batch in results.iter_batches(batch_format="numpy", batch_size=None):
        _add(summary, seen, batch)
        hosts.update(str(w) for w in batch["worker"])
    summary.workers = len(hosts)
    return summary


# -- inside Ray tasks ------------------------------------------------------------------------

def _numpy_udf(fn: Callable[..., Batch]) -> Any:
    """Ray types a UDF as taking any batch format; these take and return `numpy` batches."""
    return fn


def _parse_lines(batch: Batch, *, only_user: str | None) -> Batch:
    rows: list[tuple[str, str, str]] = []
    for line in batch["text"]:
        try:
            event = parse_event(json.loads(line), default_user_id=only_user)
        except (ValueError, InvalidEventError) as exc:  # kept, to be reported by the driver
            rows.append(("", "", f"{exc}: {str(line)[:120]}"))
            continue
        if only_user is None or event.user_id == only_user:
            rows.append((event.user_id, event.model_dump_json(), ""))
    return {name: np.array([r[i] for r in rows], dtype=object)
            for i, name in enumerate(("user_id", "event", "error"))}


def _valid_only(batch: Batch) -> Batch:
    keep = batch["error"] == ""
    return {"user_id": batch["user_id"][keep], "event": batch["event"][keep]}


def _invalid_only(batch: Batch) -> Batch:
    return {"error": batch["error"][batch["error"] != ""]}


def _collect_user(group: Batch) -> Batch:
    users = group["user_id"]
    events = np.empty(1, dtype=object)
    events[0] = list(group["event"])
    return {"user_id": np.array(users[:1], dtype=object), "events": events}


# One event loop per worker process, kept open across tasks: the SDK's HTTP client of a
# finished task is closed when it is garbage-collected, which needs its loop still open.
_RUNNER: asyncio.Runner | None = None


def _ingest_rows(batch: Batch, *, config: WorkerConfig) -> Batch:
    """One Ray task: its own Engine, its rows' users ingested `config.concurrency` at once."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = asyncio.Runner()
    rows = list(zip(batch["user_id"], batch["events"], strict=True))
    outcomes = _RUNNER.run(_ingest_all(rows, config))
    columns = ("user_id", "events_new", "batches", "llm_calls", "input_tokens",
               "output_tokens", "cost_usd", "changes", "commit_retries", "error")
    result = {name: np.array([o[i] for o in outcomes], dtype=object)
              for i, name in enumerate(columns)}
    result["worker"] = np.array([f"{socket.gethostname()}:{os.getpid()}"] * len(rows),
                                dtype=object)
    return result


async def _ingest_all(rows: list[tuple[Any, Any]], config: WorkerConfig) -> list[tuple[Any, ...]]:
    """The rows' users through `Engine.ingest_many`, one outcome tuple per row, in the
    order they finish (a user in two rows is ingested twice: the ledger makes it safe)."""
    outcomes: list[tuple[Any, ...]] = []

    def done(user: str, result: IngestResult | BaseException) -> None:
        outcomes.append(_outcome(result) if isinstance(result, IngestResult) else (
            user, 0, 0, 0, 0, 0, math.nan, 0, 0, f"{type(result).__name__}: {result}"))

    pairs = ((str(user), [json.loads(e) if isinstance(e, str) else e for e in events])
             for user, events in rows)
    async with Engine(model=config.model, store=config.store, base_url=config.base_url,
                      api_key=config.api_key, **config.engine_options) as engine:
        await engine.ingest_many(pairs, concurrency=config.concurrency, on_done=done,
                                 keep_results=False)
    return outcomes


def _outcome(r: IngestResult) -> tuple[Any, ...]:
    cost = math.nan if r.cost_usd is None else r.cost_usd
    return (r.user_id, r.events_new, r.batches, r.llm_calls, r.input_tokens, r.output_tokens,
            cost, len(r.changes), r.commit_retries, "")


# -- on the driver ---------------------------------------------------------------------------

def _add(summary: RayIngestSummary, seen: set[str], batch: Batch) -> None:
    for i, user in enumerate(batch["user_id"]):
        summary.rows += 1
        seen.add(str(user))
        error = str(batch["error"][i])
        if error:
            summary.errors[str(user)] = error
            continue
        for name in ("events_new", "batches", "changes", "commit_retries"):
            setattr(summary, name, getattr(summary, name) + int(batch[name][i]))
        cost = float(batch["cost_usd"][i])
        summary.count(Usage(llm_calls=int(batch["llm_calls"][i]),
                            input_tokens=int(batch["input_tokens"][i]),
                            output_tokens=int(batch["output_tokens"][i]),
                            cost_usd=None if math.isnan(cost) else cost))
    summary.users = len(seen)


def _event_json(user: str, event: Event | Mapping[str, Any]) -> str:
    parsed = event if isinstance(event, Event) else parse_event(event, default_user_id=user)
    return parsed.model_dump_json()
