"""A fake LLM provider on loopback that speaks the OpenAI and Anthropic wire formats.

For fault-injection tests and benchmarks only. It answers chat-completions and Messages
requests with valid extractions built from the request's own events, counts tokens,
enforces requests-per-minute and tokens-per-minute limits (429 with Retry-After past
them), adds latency, and plays a script of faults: 429, 5xx, timeouts, dropped
connections, truncated or non-JSON bodies, and answers that never validate.

It also serves both batch APIs, in their documented formats, answering every line with
the extraction it would give online: OpenAI's (`POST /v1/files` with purpose `batch`,
`POST /v1/batches`, `GET /v1/batches/{id}` going validating → in_progress → completed,
`GET /v1/files/{id}/content` with one `{"custom_id", "response": {"status_code", "body"}}`
line per request) and Anthropic's Message Batches (`POST /v1/messages/batches`, `GET
/v1/messages/batches/{id}` going in_progress → ended, its `results_url` serving one
`{"custom_id", "result": {"type": "succeeded", "message"}}` line per request). A batch ends
after `batch_polls` status polls, so a test can interrupt one mid-flight, and
`batch_faults` scripts whole-batch failures, expiry, an errored line or an unparsable one.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

try:
    from aiohttp import web
    from aiohttp.web_request import FileField
except ImportError as exc:  # the wheel ships this module; aiohttp comes with the extra
    raise ImportError("doxa.testing.fake_provider needs the testing extra: "
                      "pip install 'doxa[testing]'") from exc

Fault = Literal[
    "429", "429-no-retry-after", "500", "502", "503", "timeout", "drop", "truncated",
    "non-json", "invalid", "401", "context-length",
]
BatchFault = Literal["failed", "expired", "errored-line", "invalid-line"]
"""A whole batch failed (OpenAI: input validation; Anthropic: every line errored), expired
(every line), or its first line errored (a 500) or answered something that does not parse."""
_ANTHROPIC_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
NAIVE_TOOL = "NaiveAnswer"
"""The naive eval baseline's answer model (doxa.eval.naive): findings, not records."""
_NAIVE_LINE = re.compile(r"^(\S+) \| \S+ \| \S+ \| (.*) \|(?: .*)?$", re.M)
"""One event line of the naive baseline's prompt: id | time | type | text | properties."""
WHY_TOOL = "WhyAnswer"
"""The why pass's answer model (doxa.llm.why_schema): links between numbered records."""
_WHY_RECORD = re.compile(r'^\[(\d+)\] ([a-z_]+): .*?\((\S+): "(.*?)"\)', re.M)
"""One numbered record of the why prompt, with its first quote: number, kind, event, words."""
_EVENT = re.compile(r'<event id="([^"]+)"(?: same_as="([^"]*)")?[^>]*>(.*?)</event>', re.S)


@dataclass
class ProviderStats:
    """What the fake provider saw: requests, tokens, and requests it refused for rate."""

    requests: int = 0
    answered: int = 0
    rate_limited: int = 0
    faults_played: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    request_times: list[float] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    """Online request bodies, kept only with `FakeProvider(keep_bodies=True)`."""
    files_uploaded: int = 0
    batches_created: int = 0
    batch_polls: int = 0
    batch_lines: int = 0
    results_downloaded: int = 0


@dataclass
class FakeBatch:
    """One batch job the fake holds: its request lines and, once ended, its result lines."""

    id: str
    wire: str
    lines: list[tuple[str, dict[str, Any]]]
    created_at: float
    fault: BatchFault | None = None
    input_file_id: str = ""
    metadata: dict[str, str] | None = None
    polls: int = 0
    results: list[dict[str, Any]] | None = None
    errors: list[dict[str, Any]] | None = None


@dataclass
class FakeProvider:
    """Configure, `await start()`, point a client at `base_url`, `await stop()`."""

    latency_s: float = 0.0
    rpm: int | None = None
    tpm: int | None = None
    faults: list[Fault] = field(default_factory=list)
    timeout_hang_s: float = 30.0
    batch_polls: int = 1
    """Status polls that still report a batch as running; the next one reports it ended."""
    batch_faults: list[BatchFault] = field(default_factory=list)
    """Played one per created batch, in order; a batch with none completes normally."""
    keep_bodies: bool = False
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Applied to every online answer before it is sent: a test's way to make the provider
    answer wrongly in a specific, repeatable way (a value outside a closed set, say)."""
    answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Replaces `answer_for` for online answers: a test's model that reads the request itself
    (an obedient model that follows instructions planted in the events, say)."""
    batches: dict[str, FakeBatch] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    stats: ProviderStats = field(default_factory=ProviderStats)
    _runner: web.AppRunner | None = None
    _window: deque[tuple[float, int]] = field(default_factory=deque)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> FakeProvider:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/files", self._openai_file_upload)
        app.router.add_get("/v1/files/{file_id}/content", self._openai_file_content)
        app.router.add_post("/v1/batches", self._openai_batch_create)
        app.router.add_get("/v1/batches", self._openai_batch_list)
        app.router.add_get("/v1/batches/{batch_id}", self._openai_batch_retrieve)
        app.router.add_post("/v1/messages/batches", self._anthropic_batch_create)
        app.router.add_get("/v1/messages/batches/{batch_id}", self._anthropic_batch_retrieve)
        app.router.add_get("/v1/messages/batches/{batch_id}/results", self._anthropic_results)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ---------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "openai")

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _handle(self, request: web.Request, wire: str) -> web.StreamResponse:
        self.stats.requests += 1
        self.stats.request_times.append(time.monotonic())
        body = await request.json()
        if self.keep_bodies:
            self.stats.bodies.append(body)
        prompt_tokens = count_tokens(json.dumps(body))
        limited = self._rate_limited(prompt_tokens)
        if limited is not None:
            self.stats.rate_limited += 1
            return _error(429, "rate limit reached", wire, retry_after=limited)
        if self.faults:
            self.stats.faults_played += 1
            fault = self.faults.pop(0)
            played = await self._play(fault, request, wire, body)
            if played is not None:
                return played
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        arguments = (self.answer or answer_for)(body)
        if self.rewrite is not None:
            arguments = self.rewrite(arguments)
        completion_tokens = count_tokens(json.dumps(arguments))
        self.stats.answered += 1
        self.stats.input_tokens += prompt_tokens
        self.stats.output_tokens += completion_tokens
        return web.json_response(
            _openai_body(arguments, prompt_tokens, completion_tokens, tool_name(body))
            if wire == "openai"
            else _anthropic_body(arguments, prompt_tokens, completion_tokens, tool_name(body)))

    async def _play(self, fault: Fault, request: web.Request, wire: str,
                    body: dict[str, Any]) -> web.StreamResponse | None:
        if fault == "429":
            return _error(429, "rate limit reached", wire, retry_after=0.05)
        if fault == "429-no-retry-after":
            return _error(429, "rate limit reached", wire)
        if fault in ("500", "502", "503", "401"):
            return _error(int(fault), f"fault {fault}", wire)
        if fault == "context-length":  # each provider's documented wording
            return _error(400, "This model's maximum context length is 8192 tokens. However, "
                          "you requested 10705 tokens." if wire == "openai" else
                          "prompt is too long: 210000 tokens > 200000 maximum", wire)
        if fault == "timeout":
            await asyncio.sleep(self.timeout_hang_s)
            return _error(504, "too late", wire)
        if fault == "drop":
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("dropped on purpose")
        if fault == "truncated":
            text = json.dumps(_openai_body(answer_for(body), 10, 10))
            return web.Response(text=text[: len(text) // 2], content_type="application/json")
        if fault == "non-json":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        if fault == "invalid":
            bad = {"notes": "", "records": [{"kind": "goal", "statement": "Injected goal",
                                             "context": "x", "basis": "explicit",
                                             "evidence": [{"event_id": "no-such-event"}]}]}
            payload = (_openai_body(bad, 10, 10) if wire == "openai"
                       else _anthropic_body(bad, 10, 10))
            return web.json_response(payload)
        return None

    def _rate_limited(self, tokens: int) -> float | None:
        """Seconds until the request would fit the limits, or None when it fits now."""
        now = time.monotonic()
        while self._window and now - self._window[0][0] >= 60.0:
            self._window.popleft()
        over_rpm = self.rpm is not None and len(self._window) >= self.rpm
        used = sum(t for _, t in self._window)
        over_tpm = self.tpm is not None and used + tokens > self.tpm
        if over_rpm or over_tpm:
            return max(0.01, 60.0 - (now - self._window[0][0])) if self._window else 1.0
        self._window.append((now, tokens))
        return None


    # -- batch APIs ---------------------------------------------------------------------------

    def _new_batch(self, wire: str, lines: list[tuple[str, dict[str, Any]]],
                   prefix: str) -> FakeBatch:
        self.stats.batches_created += 1
        self.stats.batch_lines += len(lines)
        batch = FakeBatch(id=f"{prefix}{self.stats.batches_created:04d}", wire=wire,
                          lines=lines, created_at=time.time(),
                          fault=self.batch_faults.pop(0) if self.batch_faults else None)
        self.batches[batch.id] = batch
        return batch

    def _advance(self, batch: FakeBatch) -> bool:
        """Count a status poll; True once the batch has ended (its results are then fixed)."""
        self.stats.batch_polls += 1
        batch.polls += 1
        if batch.polls <= self.batch_polls:
            return False
        if batch.results is None:
            batch.results = [self._result_line(batch, n, cid, body)
                             for n, (cid, body) in enumerate(batch.lines)]
        return True

    def _result_line(self, batch: FakeBatch, n: int, custom_id: str,
                     body: dict[str, Any]) -> dict[str, Any]:
        """The documented result line for one request: succeeded, errored or expired."""
        fault = batch.fault
        if fault in ("failed", "expired") or (fault == "errored-line" and n == 0):
            kind = "expired" if fault == "expired" else "errored"
            return _openai_error_line(n, custom_id, kind) if batch.wire == "openai" else {
                "custom_id": custom_id, "result": {"type": "expired"} if kind == "expired" else
                {"type": "errored", "error": {"type": "error", "error": {
                    "type": "api_error", "message": "fake internal error"}}}}
        arguments = ({"oops": "not an extraction"} if fault == "invalid-line" and n == 0
                     else answer_for(body))
        prompt, completion = count_tokens(json.dumps(body)), count_tokens(json.dumps(arguments))
        self.stats.answered += 1
        self.stats.input_tokens += prompt
        self.stats.output_tokens += completion
        if batch.wire == "openai":
            return {"id": f"batch_req_{n}", "custom_id": custom_id, "error": None,
                    "response": {"status_code": 200, "request_id": f"req_{n}",
                                 "body": _openai_body(arguments, prompt, completion)}}
        return {"custom_id": custom_id, "result": {
            "type": "succeeded", "message": _anthropic_body(arguments, prompt, completion)}}

    async def _openai_file_upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, FileField) or purpose != "batch":
            return _error(400, "multipart needs a file and purpose=batch", "openai")
        data = upload.file.read()
        self.stats.files_uploaded += 1
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = data
        return web.json_response(_openai_file(file_id, len(data), upload.filename, "batch"))

    async def _openai_file_content(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["file_id"])
        if data is None:
            return _error(404, "no such file", "openai")
        self.stats.results_downloaded += 1
        return web.Response(body=data, content_type="application/octet-stream")

    async def _openai_batch_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        data = self.files.get(body.get("input_file_id", ""))
        if data is None or body.get("completion_window") != "24h":
            return _error(400, "input_file_id must name an uploaded file; window 24h", "openai")
        lines, errors = _openai_lines(data, body.get("endpoint", ""))
        batch = self._new_batch("openai", lines, "batch_")
        batch.input_file_id, batch.metadata = body["input_file_id"], body.get("metadata")
        if errors or batch.fault == "failed":
            batch.errors = errors or [{"code": "invalid_request", "line": 1, "param": None,
                                       "message": "fake validation failure"}]
        return web.json_response(self._openai_batch(batch, "validating"))

    async def _openai_batch_list(self, request: web.Request) -> web.Response:
        data = [self._openai_batch(b, "in_progress") for b in reversed(self.batches.values())
                if b.wire == "openai"]
        return web.json_response({"object": "list", "data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def _openai_batch_retrieve(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None or batch.wire != "openai":
            return _error(404, "no such batch", "openai")
        if batch.errors is not None:
            self.stats.batch_polls += 1
            return web.json_response(self._openai_batch(batch, "failed"))
        ended = self._advance(batch)
        status = ("in_progress" if not ended else
                  "expired" if batch.fault == "expired" else "completed")
        return web.json_response(self._openai_batch(batch, status))

    def _openai_batch(self, batch: FakeBatch, status: str) -> dict[str, Any]:
        created = int(batch.created_at)
        ended = status in ("completed", "expired")
        output_id = error_id = None
        failed = done = 0
        if ended and batch.results is not None:
            ok = [r for r in batch.results if (r["response"] or {}).get("status_code") == 200]
            bad = [r for r in batch.results if r not in ok]
            done, failed = len(ok), len(bad)
            output_id = self._result_file(f"{batch.id}-output", ok)
            error_id = self._result_file(f"{batch.id}-errors", bad)
        return {
            "id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions",
            "input_file_id": batch.input_file_id, "completion_window": "24h",
            "status": status, "output_file_id": output_id, "error_file_id": error_id,
            "errors": ({"object": "list", "data": batch.errors} if batch.errors else None),
            "created_at": created, "expires_at": created + 86_400,
            "in_progress_at": created if status != "validating" else None,
            "completed_at": created if status == "completed" else None,
            "expired_at": created if status == "expired" else None,
            "failed_at": created if status == "failed" else None,
            "request_counts": {"total": len(batch.lines), "completed": done, "failed": failed},
            "metadata": batch.metadata,
        }

    def _result_file(self, file_id: str, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None  # the API leaves output_file_id / error_file_id unset when empty
        self.files[file_id] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return file_id

    async def _anthropic_batch_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "requests: a non-empty list is required", "anthropic")
        seen: set[str] = set()
        for n, item in enumerate(requests):
            cid = item.get("custom_id") if isinstance(item, dict) else None
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(cid, str) or not _ANTHROPIC_CUSTOM_ID.match(cid) or cid in seen:
                return _error(400, f"requests.{n}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$ "
                              "and be unique", "anthropic")
            if not isinstance(params, dict) or not {"model", "max_tokens", "messages"} <= set(
                    params):
                return _error(400, f"requests.{n}.params: model, max_tokens and messages are "
                              "required", "anthropic")
            seen.add(cid)
        batch = self._new_batch("anthropic", [(r["custom_id"], r["params"]) for r in requests],
                                "msgbatch_")
        return web.json_response(self._anthropic_batch(batch, request))

    async def _anthropic_batch_retrieve(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None or batch.wire != "anthropic":
            return _error(404, "no such batch", "anthropic")
        self._advance(batch)
        return web.json_response(self._anthropic_batch(batch, request))

    def _anthropic_batch(self, batch: FakeBatch, request: web.Request) -> dict[str, Any]:
        ended = batch.results is not None
        counts = {"processing": 0 if ended else len(batch.lines), "succeeded": 0, "errored": 0,
                  "canceled": 0, "expired": 0}
        for line in batch.results or []:
            counts[line["result"]["type"]] += 1
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created_at))
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created_at + 86_400))
        root = f"{request.scheme}://{request.host}"
        return {
            "id": batch.id, "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": counts, "created_at": created, "expires_at": expires,
            "ended_at": created if ended else None, "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{root}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    async def _anthropic_results(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None or batch.results is None:
            return _error(404, "no results (has the batch ended?)", "anthropic")
        self.stats.results_downloaded += 1
        text = "".join(json.dumps(line) + "\n" for line in batch.results)
        return web.Response(body=text.encode(), content_type="application/binary")


@contextmanager
def serving_in_thread(provider: FakeProvider) -> Iterator[FakeProvider]:
    """The provider started on its own event-loop thread, for code that is not async (a CLI
    command run by typer's test runner starts and ends its own loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(provider.start(), loop).result(10)
        yield provider
        asyncio.run_coroutine_threadsafe(provider.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def count_tokens(text: str) -> int:
    """About four characters a token, as doxa's own estimate."""
    return max(1, (len(text) + 3) // 4)


def events_in(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(id, text) of each event the request's user message shows, as a model reads them."""
    return [(m.group(1), m.group(3)) for t in _user_texts(body) for m in _EVENT.finditer(t)]


def _user_texts(body: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue  # the system prompt's worked example is not this user's events
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [c.get("text", "") for c in content if isinstance(c, dict)]
    return texts


def _kind_of(text: str) -> str:
    lowered = text.lower()
    return ("goal" if any(w in lowered for w in ("need", "want", "goal", "plan"))
            else "preference" if any(w in lowered for w in ("prefer", "please", "rather"))
            else "belief")


def tool_name(body: dict[str, Any]) -> str:
    """The tool the request asks to be called: `Extraction` unless it is the naive baseline's
    or the why pass's."""
    for tool in body.get("tools") or []:
        name = tool.get("name") or tool.get("function", {}).get("name")
        if name in (NAIVE_TOOL, WHY_TOOL):
            return str(name)
    return "Extraction"


def naive_answer_for(body: dict[str, Any]) -> dict[str, Any]:
    """The naive baseline's answer: one finding per event line whose text has 4+ words."""
    findings = []
    for text in _user_texts(body):
        for line in _NAIVE_LINE.finditer(text):
            event_id, words = line.group(1), line.group(2).split()
            if len(words) >= 4:
                findings.append({"kind": _kind_of(line.group(2)),
                                 "statement": f"Said: {' '.join(words[:8])}"[:200],
                                 "event_ids": [event_id], "quote": " ".join(words[:4])})
    return {"findings": findings}


def why_answer_for(body: dict[str, Any]) -> dict[str, Any]:
    """The why pass's answer: each listed goal linked to each listed record a relation can
    point at (a motivation, constraint or belief), citing that record's first quote; no new
    records. Enough for a link to be proposed, validated and stored end to end."""
    relation = {"motivation": "because", "constraint": "constrained_by", "belief": "blocked_by"}
    shown = [(int(m.group(1)), m.group(2), m.group(3), m.group(4))
             for text in _user_texts(body) for m in _WHY_RECORD.finditer(text)]
    links = [{"goal": goal, "relation": relation[kind], "target": number,
              "evidence": [{"event_id": event_id, "quote": quote}]}
             for goal, goal_kind, _, _ in shown if goal_kind == "goal"
             for number, kind, event_id, quote in shown if kind in relation]
    return {"records": [], "links": links[:8]}


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    """A valid extraction: one record per event whose text has at least four words."""
    if tool_name(body) == NAIVE_TOOL:
        return naive_answer_for(body)
    if tool_name(body) == WHY_TOOL:
        return why_answer_for(body)
    records: list[dict[str, Any]] = []
    for event_id, text in events_in(body):
        words = text.split()
        if len(words) < 4 or "=" in words[0]:
            continue
        kind = _kind_of(text)
        records.append({
            "kind": kind, "statement": f"Said: {' '.join(words[:8])}"[:200],
            "context": "general", "basis": "explicit", "relation": "new",
            "evidence": [{"event_id": event_id, "quote": " ".join(words[:4])}],
        })
    closed = _closed_dimensions(body)
    if (dimensions := _record_dimensions(body)) is not None:
        # A schema-shaped tool files every record under a dimension: the first free-text
        # one (a closed one would need a listed value), else "other".
        free = [d for d in dimensions if d not in closed and d != "other"] or ["other"]
        records = [{**r, "dimension": free[0], "value": None} for r in records]
    answer: dict[str, Any] = {"notes": f"{len(records)} event(s) with text",
                              "records": records[:_max_records(body)]}
    if closed:
        # A schema-shaped tool asks, per value of each closed dimension, which event shows
        # it; this server ties none ("" everywhere), leaving dimensions to the rewrite hook.
        answer["answers"] = {name: dict.fromkeys(values, "") for name, values in closed.items()}
    return answer


def _tool_parameters(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON schemas of the request's tools (OpenAI or Anthropic wire)."""
    return [tool.get("input_schema") or tool.get("function", {}).get("parameters") or {}
            for tool in body.get("tools") or []]


def _closed_dimensions(body: dict[str, Any]) -> dict[str, list[str]]:
    """The closed dimensions a schema-shaped extraction tool asks about, with their values."""
    for parameters in _tool_parameters(body):
        defs = parameters.get("$defs", {})
        answers = parameters.get("properties", {}).get("answers")
        if isinstance(answers, dict):
            return {name: list(_resolve(defs, node).get("properties", {}))
                    for name, node in _resolve(defs, answers).get("properties", {}).items()}
    return {}


def _max_records(body: dict[str, Any]) -> int:
    """How many records the tool schema allows (`maxItems`), as a grammar-constrained server
    would hold an answer to; 10 when the schema sets no limit."""
    for parameters in _tool_parameters(body):
        records = parameters.get("properties", {}).get("records")
        if isinstance(records, dict) and isinstance(records.get("maxItems"), int):
            return int(records["maxItems"])
    return 10


def _record_dimensions(body: dict[str, Any]) -> list[str] | None:
    """The dimension names a schema-shaped tool's records must carry; None without a schema."""
    for parameters in _tool_parameters(body):
        defs = parameters.get("$defs", {})
        records = parameters.get("properties", {}).get("records")
        if not isinstance(records, dict):
            continue
        item = _resolve(defs, records.get("items", {}))
        dimension = item.get("properties", {}).get("dimension")
        if isinstance(dimension, dict):
            return [str(v) for v in _resolve(defs, dimension).get("enum", [])]
    return None


def _resolve(defs: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A JSON-schema node, or the `$defs` entry its `$ref` points at."""
    target: dict[str, Any] = defs.get(node.get("$ref", "").rsplit("/", 1)[-1], node)
    return target


def _openai_body(arguments: dict[str, Any], prompt: int, completion: int,
                 name: str = "Extraction") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": "call_fake", "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)}}]}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }


def _anthropic_body(arguments: dict[str, Any], prompt: int, completion: int,
                    name: str = "Extraction") -> dict[str, Any]:
    return {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": "fake",
        "content": [{"type": "tool_use", "id": "toolu_fake", "name": name,
                     "input": arguments}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def _openai_lines(data: bytes, endpoint: str
                  ) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """Read a batch input file: each line `{"custom_id", "method": "POST", "url", "body"}`."""
    lines: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, raw in enumerate(data.decode("utf-8").splitlines(), start=1):
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            errors.append({"code": "invalid_json_line", "line": n, "param": None,
                           "message": "this line is not JSON"})
            continue
        cid = item.get("custom_id")
        if (not isinstance(cid, str) or cid in seen or item.get("method") != "POST"
                or item.get("url") != endpoint or not isinstance(item.get("body"), dict)):
            errors.append({"code": "invalid_request", "line": n, "param": None,
                           "message": "needs a unique custom_id, method POST, the batch's "
                           "endpoint as url, and a body"})
            continue
        seen.add(cid)
        lines.append((cid, item["body"]))
    return lines, errors


def _openai_error_line(n: int, custom_id: str, kind: str) -> dict[str, Any]:
    if kind == "expired":
        return {"id": f"batch_req_{n}", "custom_id": custom_id, "response": None,
                "error": {"code": "batch_expired", "message": "This request could not be "
                          "executed before the completion window expired."}}
    return {"id": f"batch_req_{n}", "custom_id": custom_id, "error": None,
            "response": {"status_code": 500, "request_id": f"req_{n}", "body": {"error": {
                "message": "fake internal error", "type": "server_error", "param": None,
                "code": None}}}}


def _openai_file(file_id: str, size: int, filename: str, purpose: str) -> dict[str, Any]:
    return {"id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()),
            "filename": filename, "purpose": purpose, "status": "processed"}


def _error(status: int, message: str, wire: str,
           retry_after: float | None = None) -> web.Response:
    headers = {"retry-after": f"{retry_after:.2f}"} if retry_after is not None else {}
    body: dict[str, Any] = (
        {"error": {"message": message, "type": "fake", "param": None, "code": str(status)}}
        if wire == "openai" else
        {"type": "error", "error": {"type": "rate_limit_error" if status == 429 else "api_error",
                                    "message": message}})
    return web.json_response(body, status=status, headers=headers)
