"""Backfills at half price: a history extracted through the provider's batch API.

A user's batch k is prompted with the model after batch k-1 (its known records), so a
user's batches cannot all be submitted at once. The backfill runs in rounds: round k holds
the next pending batch of every user that has one, as the engine prepares it
(`Engine.prepare`: rendered against the stored model, the body the online path sends). It
is submitted as one job (more when it passes the provider's size limits), polled until it
ends, and each answer goes back to the engine (`Engine.apply`), which validates it exactly
like an online one, merges and commits it per user. Round k+1 is built from the store.

Failures stay per user and nothing is half-written: a request that errored, expired or
answered something that does not parse leaves that user's batch unprocessed (earlier
batches are committed, later ones wait); it is submitted again in the next round, up to
`retries` times, after which the user is set aside for this run and reported. A record
that fails validation is dropped and counted, as online (there is no re-ask in a batch).

Resumable: a state file, replaced atomically after every step, holds the outstanding jobs'
ids and what each request asked. A re-run collects those jobs instead of submitting again,
a job already merged is not merged twice, and a user committed just before a crash is
recognised by the store's processed-event ledger (the second line of defence).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from doxa.engine import Engine, IngestResult, PreparedRequest
from doxa.errors import (
    BackfillStateError,
    DoxaError,
    ExtractionValidationError,
    UserErasedError,
)
from doxa.events.parse import Event
from doxa.llm.batch_api import Answer, BatchAPI, JobStatus
from doxa.relevance import Batch
from doxa.usage import FlatUsage
from doxa.workdir import PrivateDir

log = logging.getLogger(__name__)

STATE_VERSION = 1
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}$")


class UserSource(Protocol):
    """Users and their events, iterable more than once (a `UserSpool` is one)."""

    def users(self) -> Iterator[tuple[str, list[Event]]]:
        """Each user id with all of that user's events, in file order."""


@dataclass(frozen=True)
class EventsByUser:
    """A `UserSource` over events already in memory."""

    events: Mapping[str, Sequence[Event]]

    def users(self) -> Iterator[tuple[str, list[Event]]]:
        for user_id in sorted(self.events):
            yield user_id, list(self.events[user_id])


@dataclass(frozen=True)
class BackfillConfig:
    """How often to poll, how often a failed user is retried, and how jobs are cut."""

    poll_interval_s: float = 30.0
    retries: int = 1
    """A user's failed batch is submitted again in the next round this many times."""
    max_requests_per_job: int | None = None
    """Default: the provider's limit (OpenAI 50,000, Anthropic 100,000)."""


@dataclass(frozen=True)
class BackfillProgress:
    """What the backfill is doing, for a progress display."""

    round: int
    phase: Literal["preparing", "submitted", "waiting", "merging"]
    done: int
    total: int
    detail: str = ""


class RequestRef(BaseModel):
    """What one request asked: the user, the batch, and the record ids its prompt showed."""

    user_id: str
    batch_id: str
    known_record_ids: list[str]


class JobState(BaseModel):
    """One provider job of a round; `id` is empty until the provider has accepted it."""

    tag: str
    id: str = ""
    requests: dict[str, RequestRef]
    merged: bool = False


class RoundState(BaseModel):
    number: int
    jobs: list[JobState] = Field(default_factory=list)


class Totals(FlatUsage):
    """Counters over the whole backfill, across resumed runs."""

    rounds: int = 0
    jobs: int = 0
    requests: int = 0
    answered: int = 0
    errored: int = 0
    batches_merged: int = 0
    batches_without_signal: int = 0
    changes: int = 0
    dropped: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class BackfillState(BaseModel):
    """The resume file: replaced atomically after every step."""

    version: int = STATE_VERSION
    model: str
    base_url: str | None
    prompt_version: str
    fingerprint: str
    round: int = 0
    """Rounds completed."""
    outstanding: RoundState | None = None
    attempts: dict[str, int] = Field(default_factory=dict)
    """Failed attempts per `user_id batch_id`."""
    gave_up: dict[str, str] = Field(default_factory=dict)
    """Users set aside for this run, with the reason."""
    generations: dict[str, int] = Field(default_factory=dict)
    """Each user's erasure generation when this backfill first reached the user: a user
    deleted after that is set aside, never merged into again by this run."""
    totals: Totals = Field(default_factory=Totals)


class BackfillResult(BaseModel):
    """What a backfill did and what it cost (at the batch discount)."""

    model: str
    prompt_version: str
    users: int
    rounds: int
    jobs: int
    requests: int
    answered: int
    errored: int
    batches_merged: int
    batches_without_signal: int
    changes: int
    dropped: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    online_cost_usd: float | None
    failed_users: dict[str, str]
    resumed: bool


def default_state_path(source: str | Path) -> Path:
    return Path(f"{source}.backfill-state.json")


def custom_id(user_id: str, round_number: int) -> str:
    """User id + round, within both providers' custom_id rules (Anthropic: [A-Za-z0-9_-],
    64 chars); other user ids are hashed (the state file maps every id back)."""
    safe = user_id if _SAFE_ID.match(user_id) else "u" + hashlib.sha256(
        user_id.encode()).hexdigest()[:24]
    return f"{safe}-{round_number}"


class Backfill:
    """One resumable batch-API backfill of a source of events into the engine's store."""

    def __init__(self, engine: Engine, source: UserSource, state_path: str | Path, *,
                 config: BackfillConfig | None = None, api: BatchAPI | None = None,
                 on_progress: Callable[[BackfillProgress], None] | None = None) -> None:
        self.engine = engine
        self.source = source
        self.state_path = Path(state_path)
        self.config = config or BackfillConfig()
        self._api = api
        self._progress = on_progress or (lambda _p: None)

    @property
    def api(self) -> BatchAPI:
        if self._api is None:
            self._api = self.engine.batch_api()
        return self._api

    async def run(self) -> BackfillResult:
        """Run (or resume) rounds until no user has a pending batch; then drop the state."""
        state = self._open_state()
        resumed = state.outstanding is not None or state.round > 0
        while True:
            if state.outstanding is None and not await self._submit_round(state):
                break
            await self._finish_round(state)
        result = self._result(state, resumed)
        self.state_path.unlink(missing_ok=True)  # nothing left to resume
        return result

    # -- state ------------------------------------------------------------------------------

    def _open_state(self) -> BackfillState:
        fresh = BackfillState(model=self.engine.spec.label, base_url=self.engine.spec.base_url,
                              prompt_version=self.engine.prompt_version,
                              fingerprint=self._fingerprint())
        if not self.state_path.exists():
            self._save(fresh)
            return fresh
        try:
            state = BackfillState.model_validate_json(self.state_path.read_text("utf-8"))
        except ValueError as exc:
            raise BackfillStateError(f"{self.state_path} is not a doxa backfill state file "
                                     f"({exc}); move it away to start over") from exc
        mismatch = [f"{name} {theirs!r} (this run: {ours!r})" for name, theirs, ours in (
            ("input", state.fingerprint, fresh.fingerprint), ("model", state.model, fresh.model),
            ("base URL", state.base_url, fresh.base_url),
            ("prompt", state.prompt_version, fresh.prompt_version)) if theirs != ours]
        if mismatch:
            pending = (f"; round {state.outstanding.number} is outstanding as job(s) "
                       + ", ".join(j.id for j in state.outstanding.jobs if j.id)
                       if state.outstanding else "")
            raise BackfillStateError(
                f"{self.state_path} belongs to a different backfill: {'; '.join(mismatch)}"
                f"{pending}. Re-run with the same file, model and base URL to resume, or "
                "delete the state file to start over (merged rounds stay merged).")
        return state

    def _save(self, state: BackfillState) -> None:
        """Write-then-rename: a kill leaves the old state or the new one, never half of it."""
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(state.model_dump_json(indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for user_id, events in self.source.users():
            digest.update(user_id.encode() + b"\0")
            for event in events:
                digest.update(event.model_dump_json().encode() + b"\0")
        return digest.hexdigest()[:24]

    # -- a round: prepare and submit --------------------------------------------------------

    async def _submit_round(self, state: BackfillState) -> bool:
        """Submit the next pending batch of every user; False when none is left."""
        number = state.round + 1
        state.outstanding = RoundState(number=number)
        limit = min(self.config.max_requests_per_job or self.api.max_requests,
                    self.api.max_requests)
        # The requests hold event text: a private directory the next run sweeps if killed.
        with PrivateDir("doxa-backfill-") as folder:
            job = _JobFile(folder, number, limit, self.api.max_bytes)
            async for cid, ref, line in self._requests(state, number):
                if not job.fits(len(line)):
                    await self._submit(state, job)
                    job = job.next()
                job.add(cid, ref, line)
                self._progress(BackfillProgress(number, "preparing", job.count, 0))
            if job.count:
                await self._submit(state, job)
        if not state.outstanding.jobs:
            state.outstanding = None
            self._save(state)
            return False
        return True

    async def _requests(self, state: BackfillState,
                        number: int) -> AsyncIterator[tuple[str, RequestRef, bytes]]:
        """Each user's next request line, rendered against the model in the store now."""
        engine = self.engine
        for user_id, events in self.source.users():
            if user_id in state.gave_up:
                continue
            if user_id not in state.generations:
                state.generations[user_id] = await engine.generation(user_id)
            request = await self._next_request(state, user_id, events)
            if request is None:
                continue
            cid = custom_id(user_id, number)
            ref = RequestRef(user_id=user_id, batch_id=request.batch.id,
                             known_record_ids=sorted(request.known_record_ids))
            yield cid, ref, (json.dumps(self.api.line(cid, request.body)) + "\n").encode()

    async def _next_request(self, state: BackfillState, user_id: str,
                            events: list[Event]) -> PreparedRequest | None:
        """The user's next request; the batches without signal before it are committed
        first (they need no LLM), so the ledger stays in event order."""
        prepared = await self.engine.prepare(user_id, events)
        for batch in prepared.without_signal:
            if await self._apply(state, batch, None) is None:
                return None
            state.totals.batches_without_signal += 1
        return prepared.request

    async def _apply(self, state: BackfillState, batch: Batch, answer: Answer | None,
                     known_record_ids: Iterable[str] = ()) -> IngestResult | None:
        """Merge under the generation the run first saw; a user deleted since is set aside
        for the rest of the run (None), so the run cannot bring the user back."""
        try:
            return await self.engine.apply(batch, answer, known_record_ids=known_record_ids,
                                           generation=state.generations.get(batch.user_id))
        except UserErasedError:
            state.gave_up[batch.user_id] = ("deleted while the backfill ran; nothing more "
                                            "of this user was stored")
            log.warning("user %s was deleted during the backfill: set aside", batch.user_id)
            return None

    async def _submit(self, state: BackfillState, job: _JobFile) -> None:
        """Record the job before submitting it, so a kill in between can be recovered."""
        assert state.outstanding is not None
        entry = JobState(tag=job.tag, requests=job.refs)
        state.outstanding.jobs.append(entry)
        self._save(state)
        job.close()
        entry.id = await self.api.submit(job.path, job.tag)
        state.totals.jobs += 1
        state.totals.requests += job.count
        self._save(state)
        log.info("round %d: submitted job %s (%d requests)", job.round, entry.id, job.count)
        self._progress(BackfillProgress(job.round, "submitted", 0, job.count, entry.id))

    # -- a round: wait, collect, merge ------------------------------------------------------

    async def _finish_round(self, state: BackfillState) -> None:
        assert state.outstanding is not None
        for job in state.outstanding.jobs:
            if job.merged:
                continue
            if not job.id and not await self._recover(job):
                job.merged = True  # never reached the provider: its users go to the next round
                self._save(state)
                continue
            status = await self._wait(state.outstanding.number, job)
            answers = {} if status.failure else await self.api.results(job.id)
            await self._merge_job(state, job, answers, status.failure)
            job.merged = True
            self._save(state)
        state.round = state.outstanding.number
        state.totals.rounds += 1
        state.outstanding = None
        self._save(state)

    async def _recover(self, job: JobState) -> bool:
        """A job recorded but not known to be accepted (killed mid-submit): find it by tag."""
        found = await self.api.find(job.tag)
        if found is None:
            log.warning("job %s may not have reached the provider; its %d request(s) go to the "
                        "next round (if it did, cancel it in the provider's dashboard)",
                        job.tag, len(job.requests))
            return False
        job.id = found
        return True

    async def _wait(self, number: int, job: JobState) -> JobStatus:
        while True:
            status = await self.api.status(job.id)
            self._progress(BackfillProgress(number, "waiting", status.done,
                                            status.total or len(job.requests),
                                            f"{job.id} {status.status}"))
            if status.ended:
                return status
            await asyncio.sleep(self.config.poll_interval_s)

    async def _merge_job(self, state: BackfillState, job: JobState, answers: dict[str, Answer],
                         failure: str | None) -> None:
        """Validate and merge each user's answer, one user at a time, in the store."""
        assert state.outstanding is not None
        by_user = {ref.user_id: (cid, ref) for cid, ref in job.requests.items()}
        done = 0
        for user_id, events in self.source.users():
            if user_id not in by_user:
                continue
            cid, ref = by_user[user_id]
            pending = await self.engine.pending_batches(user_id, events)
            answer = answers.get(cid, failure or "no result line for this request")
            if not pending or pending[0].id != ref.batch_id:
                # Committed by a run killed before it could save the job as merged.
                log.info("user %s: batch %s merged before; not merged again", user_id,
                         ref.batch_id)
                self._count_answer(state, answer)
            else:
                await self._merge_answer(state, pending[0], ref, answer)
            done += 1
            self._progress(BackfillProgress(state.outstanding.number, "merging", done,
                                            len(by_user), job.id))

    async def _merge_answer(self, state: BackfillState, batch: Batch, ref: RequestRef,
                            answer: Answer) -> None:
        totals = state.totals
        if isinstance(answer, str):
            self._failed(state, ref, answer)
            return
        try:
            result = await self._apply(state, batch, answer, ref.known_record_ids)
        except ExtractionValidationError as exc:
            totals.count(self.engine.spec.provider.usage(answer))  # billed all the same
            self._failed(state, ref, "extraction invalid: " + "; ".join(exc.reasons[:5]))
            return
        if result is None:
            return
        self._count_answer(state, answer)
        totals.changes += len(result.changes)
        totals.dropped += len(result.dropped)

    def _count_answer(self, state: BackfillState, answer: Answer) -> None:
        """Count a merged answer: the counters survive a kill between merge and save."""
        if isinstance(answer, str):
            return
        state.totals.answered += 1
        state.totals.batches_merged += 1
        state.totals.count(self.engine.spec.provider.usage(answer))

    def _failed(self, state: BackfillState, ref: RequestRef, reason: str) -> None:
        key = f"{ref.user_id} {ref.batch_id}"
        attempts = state.attempts.get(key, 0) + 1
        state.attempts[key] = attempts
        state.totals.errored += 1
        if attempts > self.config.retries:
            state.gave_up[ref.user_id] = (f"batch {ref.batch_id}: {reason} "
                                          f"({attempts} attempt(s))")
        log.warning("user %s, batch %s: %s (attempt %d)", ref.user_id, ref.batch_id, reason,
                    attempts)

    def _result(self, state: BackfillState, resumed: bool) -> BackfillResult:
        t = state.totals
        spec = self.engine.spec
        return BackfillResult(
            model=state.model, prompt_version=state.prompt_version,
            users=sum(1 for _ in self.source.users()), **t.model_dump(),
            cost_usd=spec.cost(t.input_tokens, t.output_tokens, batch=True),
            online_cost_usd=spec.cost(t.input_tokens, t.output_tokens),
            failed_users=dict(state.gave_up), resumed=resumed)


class _JobFile:
    """The JSONL lines of one job, on disk, cut at the provider's count and size limits."""

    def __init__(self, folder: Path, round_number: int, max_requests: int, max_bytes: int,
                 part: int = 1) -> None:
        self.folder, self.round, self.part = folder, round_number, part
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.tag = f"r{round_number}-{part}-{uuid.uuid4().hex[:12]}"
        self.path = folder / f"round-{round_number}-{part}.jsonl"
        self._fh = self.path.open("wb")
        self.refs: dict[str, RequestRef] = {}
        self.size = 0

    @property
    def count(self) -> int:
        return len(self.refs)

    def fits(self, size: int) -> bool:
        return not self.refs or (self.count < self.max_requests
                                 and self.size + size <= self.max_bytes)

    def add(self, cid: str, ref: RequestRef, line: bytes) -> None:
        if cid in self.refs:
            raise DoxaError(f"custom_id {cid} used twice in one job (user ids "
                            f"{self.refs[cid].user_id!r} and {ref.user_id!r})")
        self._fh.write(line)
        self.refs[cid] = ref
        self.size += len(line)

    def close(self) -> None:
        self._fh.close()

    def next(self) -> _JobFile:
        return _JobFile(self.folder, self.round, self.max_requests, self.max_bytes,
                        self.part + 1)


def events_by_user(events: Iterable[Event]) -> EventsByUser:
    """Group events in memory by user (small inputs; files go through `UserSpool`)."""
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.user_id, []).append(event)
    return EventsByUser(grouped)
