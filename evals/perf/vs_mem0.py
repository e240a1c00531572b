"""doxa and mem0 side by side, in one run, on one event stream, against one counting server:
LLM calls, prompt tokens and completion tokens per event.

    .venv/bin/pip install -e '.[bench-mem0]'
    .venv/bin/python evals/perf/vs_mem0.py [--users 20] [--events-per-user 15] [--seed 7]

The stream is fixtures/demo/events.jsonl plus `--users` synthetic users (page views, feature
use, and about one event in three a chat message). Both libraries talk to the same server on
loopback, which counts every request the same way, whichever library sent it:

- prompt tokens: cl100k_base tokens (exact, via bpe-openai) of every message's text plus the
  JSON of the tool schemas sent with it (doxa sends its extraction schema as a tool; mem0
  asks for `json_object` and sends none); no per-message framing is added for either.
- completion tokens: cl100k_base tokens of the answer (doxa: the tool call's arguments;
  mem0: the message content).

Answers come from the benchmark provider's rules for both (doxa.testing.fake_provider: one
record per event whose text has 4+ words, stating its first 8 words); mem0's requests are
recognised by its extraction prompt and answered in its JSON shape with the same facts, and
its embedding requests get deterministic hashed bag-of-words vectors (counted apart: doxa
makes none). doxa is measured one ingest per user over the whole stream (how `doxa ingest`
runs), one ingest per 5 and per single event (as if each event were ingested on arrival),
and buffered: each event through `engine.add` at its own timestamp, with a worker pass
every `--poll` seconds of stream time under the default flush policy (flush_delay.py).
mem0 gets one `Memory.add` per event that carries text (a page view has no message for it).
Nothing is timed; the figures are counts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from doxa.core.flush import FlushPolicy
from doxa.engine import Engine
from doxa.events.parse import Event, load_file
from doxa.testing.fake_provider import FakeProvider, count_tokens

os.environ.setdefault("MEM0_TELEMETRY", "False")  # mem0 would post usage events otherwise
ROOT = Path(__file__).resolve().parents[2]
EMBED_DIMS = 256
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_MEM0_NEW = re.compile(r"## New Messages\n(.*?)\n\n## ", re.S)


def token_counter() -> tuple[str, Any]:
    """Exact cl100k_base counts when bpe-openai is installed, else doxa's 4-chars estimate."""
    try:
        import bpe_openai
    except ImportError:
        return "about 4 characters a token (install bpe-openai for exact counts)", count_tokens
    enc = bpe_openai.get_encoding("cl100k_base")
    return "cl100k_base (bpe-openai)", lambda text: len(enc.encode(text))


@dataclass
class Tally:
    """What one library cost: chat calls and tokens, and embedding calls and tokens."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embed_calls: int = 0
    embed_tokens: int = 0


Row = tuple[str, int, int, "Tally"]
"""Name, calls into the library (ingest / add), records or memories held after, tally."""


@dataclass
class CountingServer:
    """OpenAI-compatible server: doxa's requests go to the benchmark provider, mem0's are
    answered here; every request is counted under `phase` with the same counter."""

    count: Any
    phase: str = "none"
    tallies: dict[str, Tally] = field(default_factory=dict)
    upstream: FakeProvider | None = None
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self.upstream = await FakeProvider().start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.upstream is not None:
            await self.upstream.stop()

    def tally(self) -> Tally:
        return self.tallies.setdefault(self.phase, Tally())

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        texts = [m.get("content") or "" for m in body.get("messages", [])]
        texts = [t if isinstance(t, str) else json.dumps(t) for t in texts]
        if body.get("tools"):
            texts.append(json.dumps(body["tools"]))
        return sum(self.count(t) for t in texts if t)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        system = next((m.get("content") or "" for m in body.get("messages", [])
                       if m.get("role") == "system"), "")
        if "Memory Extractor" in system:
            answer = json.dumps({"memory": mem0_facts(body)})
            reply = _message_body(answer)
        else:
            assert self.upstream is not None
            async with aiohttp.ClientSession() as session, session.post(
                    f"{self.upstream.base_url}/chat/completions", json=body) as resp:
                reply = await resp.json()
            answer = reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        prompt, completion = self.prompt_tokens(body), self.count(answer)
        tally = self.tally()
        tally.calls += 1
        tally.prompt_tokens += prompt
        tally.completion_tokens += completion
        reply["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}
        return web.json_response(reply)

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(self.count(str(t)) for t in inputs)
        tally = self.tally()
        tally.embed_calls += 1
        tally.embed_tokens += tokens
        return web.json_response({
            "object": "list", "model": body.get("model", "fake"),
            "data": [{"object": "embedding", "index": i, "embedding": embed(str(t))}
                     for i, t in enumerate(inputs)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def mem0_facts(body: dict[str, Any]) -> list[dict[str, str]]:
    """mem0's answer shape with the benchmark provider's rule: one fact per user message of
    4+ words, stating its first 8 words (what the provider answers doxa for the same text)."""
    user = next((m.get("content") or "" for m in body["messages"] if m["role"] == "user"), "")
    found = _MEM0_NEW.search(user)
    lines = found.group(1).splitlines() if found else []
    facts: list[dict[str, str]] = []
    for line in lines:
        words = line.removeprefix("user: ").split()
        if line.startswith("user: ") and len(words) >= 4:
            facts.append({"id": str(len(facts)), "text": f"User said: {' '.join(words[:8])}",
                          "attributed_to": "user"})
    return facts


def embed(text: str) -> list[float]:
    """A deterministic hashed bag-of-words vector: similar texts land near each other."""
    vec = [0.0] * EMBED_DIMS
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vec[h % EMBED_DIMS] += 1.0 if h >> 63 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _message_body(content: str) -> dict[str, Any]:
    return {"id": "chatcmpl-count", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]}


# -- the event stream -----------------------------------------------------------------------

SAID = ["We need SSO with {x} before the security review signs off",
        "Can the {x} integration sync both ways? Our team lives in it",
        "I prefer short answers, bullet points please, I read these on my phone",
        "Our CFO wants to see payback within {n} months before we commit",
        "Honestly I think {x} is overpriced for what it does",
        "Planning to roll this out to {n} people on the support team next quarter",
        "Is there a way to export everything to CSV for our {x} reports",
        "We tried {x} last year and onboarding took far too long"]
THINGS = ["Okta", "Salesforce", "HubSpot", "Slack", "Jira", "Zendesk", "Looker", "Snowflake"]
PAGES = ["/pricing", "/docs/api", "/integrations", "/security", "/changelog", "/blog/roi"]


def synthetic(users: int, per_user: int, seed: int) -> list[Event]:
    """Users with page views, feature use and (one event in three) a chat message."""
    rng = random.Random(seed)
    out: list[Event] = []
    for u in range(users):
        user = f"bench-{u:03d}"
        for i in range(per_user):
            at = T0 + timedelta(days=u % 5, minutes=7 * i + rng.randint(0, 5))
            roll = rng.random()
            if roll < 0.34:
                text = rng.choice(SAID).format(x=rng.choice(THINGS), n=rng.randint(3, 40))
                out.append(Event(id=f"e{i}", user_id=user, type="chat_message", timestamp=at,
                                 text=text))
            elif roll < 0.8:
                out.append(Event(id=f"e{i}", user_id=user, type="page_view", timestamp=at,
                                 properties={"path": rng.choice(PAGES)}))
            else:
                out.append(Event(id=f"e{i}", user_id=user, type="feature_used", timestamp=at,
                                 properties={"feature": rng.choice(THINGS).lower()}))
    return out


def by_user(events: list[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = {}
    for e in sorted(events, key=lambda e: (e.timestamp, e.id)):
        grouped.setdefault(e.user_id, []).append(e)
    return grouped


# -- the two libraries ----------------------------------------------------------------------

async def run_doxa(events: list[Event], base_url: str, chunks: list[int | None],
                   server: CountingServer) -> list[Row]:
    """Ingest the stream once per chunk size: each user's events `chunk` at a time, in time
    order (None: all at once). One event loop for all, so no HTTP client outlives it."""
    rows: list[Row] = []
    for chunk in chunks:
        server.phase = ("doxa, one ingest per user" if chunk is None else
                        "doxa, one ingest per event" if chunk == 1 else
                        f"doxa, one ingest per {chunk} events")
        engine = Engine(model="openai/bench", store="memory://", base_url=base_url,
                        api_key="x")
        held = ingests = 0
        for user, mine in by_user(events).items():
            step = chunk or len(mine)
            for lo in range(0, len(mine), step):
                await engine.ingest(user, mine[lo:lo + step])
                ingests += 1
            held += len((await engine.model(user)).records)
        await engine.close()
        rows.append((server.phase, ingests, held, server.tally()))
    return rows


async def run_doxa_buffered(events: list[Event], base_url: str, server: CountingServer,
                            poll_s: float) -> Row:
    """Each event through `engine.add` at its own time, a worker pass (`engine.flush`, the
    default flush policy) every `poll_s` seconds of stream time: flush_delay.py's run."""
    from flush_delay import run_buffered

    server.phase = "doxa, engine.add per event + worker"
    run = await run_buffered(events, base_url, FlushPolicy(), poll_s)
    return server.phase, run.adds, run.records, server.tally()


def run_mem0(events: list[Event], base_url: str, tmp: str) -> tuple[int, int]:
    """One `Memory.add` per event with text; returns how many were sent, and how many
    memories mem0 holds at the end."""
    from mem0 import Memory

    memory = Memory.from_config({
        "llm": {"provider": "openai", "config": {
            "model": "gpt-4o-mini", "temperature": 0, "api_key": "x",
            "openai_base_url": base_url}},
        "embedder": {"provider": "openai", "config": {
            "model": "text-embedding-3-small", "embedding_dims": EMBED_DIMS, "api_key": "x",
            "openai_base_url": base_url}},
        "vector_store": {"provider": "qdrant", "config": {
            "collection_name": "bench", "embedding_model_dims": EMBED_DIMS,
            "path": f"{tmp}/qdrant", "on_disk": False}},
        "history_db_path": f"{tmp}/history.db",
    })
    sent = held = 0
    for user, mine in by_user(events).items():
        for event in mine:
            if event.text:
                memory.add([{"role": "user", "content": event.text}], user_id=user)
                sent += 1
        held += len(memory.get_all(filters={"user_id": user}, top_k=1000)["results"])
    return sent, held


# -- report ---------------------------------------------------------------------------------

def report(rows: list[Row], events: int, how: str) -> None:
    print(f"tokens: {how}; per event = over all {events} events of the stream")
    head = (f"{'':35} {'sent':>5} {'held':>5} {'LLM calls':>9} {'prompt tok':>10} {'compl tok':>9} "
            f"{'calls/ev':>8} {'prompt/ev':>9} {'compl/ev':>8} {'total/ev':>8} "
            f"{'embed calls':>11} {'embed tok':>9}")
    print(head)
    for name, sent, held, t in rows:
        print(f"{name:35} {sent:>5} {held:>5} {t.calls:>9} {t.prompt_tokens:>10} "
              f"{t.completion_tokens:>9} {t.calls / events:>8.2f} "
              f"{t.prompt_tokens / events:>9.1f} {t.completion_tokens / events:>8.1f} "
              f"{(t.prompt_tokens + t.completion_tokens) / events:>8.1f} "
              f"{t.embed_calls:>11} {t.embed_tokens:>9}")
    mem0 = rows[-1][3]
    mem0_total = mem0.prompt_tokens + mem0.completion_tokens
    for name, _, _, t in rows[:-1]:
        share = (t.prompt_tokens + t.completion_tokens) / mem0_total if mem0_total else math.nan
        print(f"{name}: LLM tokens per event = {share:.1%} of mem0's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--events-per-user", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chunks", type=int, nargs="*", default=[5, 1],
                        help="also ingest each user's events this many at a time")
    parser.add_argument("--poll", type=float, default=60.0,
                        help="also add every event to the buffer as it arrives, with a worker "
                             "pass every this many seconds of stream time (0: skip)")
    args = parser.parse_args()
    events = load_file(ROOT / "fixtures/demo/events.jsonl").events + synthetic(
        args.users, args.events_per_user, args.seed)
    how, count = token_counter()
    server = CountingServer(count=count)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result()
    users = len(by_user(events))
    print(f"stream: {len(events)} events, {users} users, "
          f"{sum(1 for e in events if e.text)} with text")
    rows = asyncio.run(run_doxa(events, server.base_url, [None, *args.chunks], server))
    if args.poll > 0:
        rows.append(asyncio.run(run_doxa_buffered(events, server.base_url, server, args.poll)))
    server.phase = "mem0, one add per text event"
    with tempfile.TemporaryDirectory(prefix="vs-mem0-") as tmp:
        sent, held = run_mem0(events, server.base_url, tmp)
    rows.append((server.phase, sent, held, server.tally()))
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
    report(rows, len(events), how)


if __name__ == "__main__":
    main()
