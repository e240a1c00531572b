"""A fake LLM provider on loopback that speaks the OpenAI and Anthropic wire formats.

For fault-injection tests and benchmarks only. It answers chat-completions and Messages
requests with valid extractions built from the request's own events, counts tokens,
enforces requests-per-minute and tokens-per-minute limits (429 with Retry-After past
them), adds latency, and plays a script of faults: 429, 5xx, timeouts, dropped
connections, truncated or non-JSON bodies, and answers that never validate.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Fault = Literal[
    "429", "429-no-retry-after", "500", "502", "503", "timeout", "drop", "truncated",
    "non-json", "invalid", "401",
]
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


@dataclass
class FakeProvider:
    """Configure, `await start()`, point a client at `base_url`, `await stop()`."""

    latency_s: float = 0.0
    rpm: int | None = None
    tpm: int | None = None
    faults: list[Fault] = field(default_factory=list)
    timeout_hang_s: float = 30.0
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
        arguments = answer_for(body)
        completion_tokens = count_tokens(json.dumps(arguments))
        self.stats.answered += 1
        self.stats.input_tokens += prompt_tokens
        self.stats.output_tokens += completion_tokens
        return web.json_response(
            _openai_body(arguments, prompt_tokens, completion_tokens) if wire == "openai"
            else _anthropic_body(arguments, prompt_tokens, completion_tokens))

    async def _play(self, fault: Fault, request: web.Request, wire: str,
                    body: dict[str, Any]) -> web.StreamResponse | None:
        if fault == "429":
            return _error(429, "rate limit reached", wire, retry_after=0.05)
        if fault == "429-no-retry-after":
            return _error(429, "rate limit reached", wire)
        if fault in ("500", "502", "503", "401"):
            return _error(int(fault), f"fault {fault}", wire)
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


def count_tokens(text: str) -> int:
    """About four characters a token, as doxa's own estimate."""
    return max(1, (len(text) + 3) // 4)


def _events_in(body: dict[str, Any]) -> list[tuple[str, str]]:
    texts: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue  # the system prompt's worked example is not this user's events
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [c.get("text", "") for c in content if isinstance(c, dict)]
    return [(m.group(1), m.group(3)) for t in texts for m in _EVENT.finditer(t)]


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    """A valid extraction: one record per event whose text has at least four words."""
    records = []
    for event_id, text in _events_in(body):
        words = text.split()
        if len(words) < 4 or "=" in words[0]:
            continue
        lowered = text.lower()
        kind = ("goal" if any(w in lowered for w in ("need", "want", "goal", "plan"))
                else "preference" if any(w in lowered for w in ("prefer", "please", "rather"))
                else "belief")
        records.append({
            "kind": kind, "statement": f"Said: {' '.join(words[:8])}"[:200],
            "context": "general", "basis": "explicit", "relation": "new",
            "evidence": [{"event_id": event_id, "quote": " ".join(words[:4])}],
        })
    return {"notes": f"{len(records)} event(s) with text", "records": records[:10]}


def _openai_body(arguments: dict[str, Any], prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": "call_fake", "type": "function",
                "function": {"name": "Extraction", "arguments": json.dumps(arguments)}}]}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }


def _anthropic_body(arguments: dict[str, Any], prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": "fake",
        "content": [{"type": "tool_use", "id": "toolu_fake", "name": "Extraction",
                     "input": arguments}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def _error(status: int, message: str, wire: str,
           retry_after: float | None = None) -> web.Response:
    headers = {"retry-after": f"{retry_after:.2f}"} if retry_after is not None else {}
    body: dict[str, Any] = (
        {"error": {"message": message, "type": "fake", "param": None, "code": str(status)}}
        if wire == "openai" else
        {"type": "error", "error": {"type": "rate_limit_error" if status == 429 else "api_error",
                                    "message": message}})
    return web.json_response(body, status=status, headers=headers)
