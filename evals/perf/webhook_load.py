"""Webhook throughput: single-event Segment deliveries per second that `doxa serve` holds
without an error, every event stored.

    .venv/bin/python evals/perf/webhook_load.py [--requests 20000] [--seconds 60]
        [--concurrency 32] [--users 200] [--signed] [--db PATH]

`doxa serve` runs as its own process on loopback (uvicorn, one worker, a SQLite store, as a
user would start it); this process is the load generator: `--concurrency` connections post
one Segment track call each per request (as the classic Webhooks destination delivers),
each with its own messageId, spread over `--users` users, until `--requests` are sent or
`--seconds` have passed. `--signed` gives the tenant a shared secret, so every request is
also signature-checked. Afterwards the server is stopped and the store is opened to count
the buffered events: the run passes only if every request got 202 and every event is there.
Both processes share this machine's cores, so the figure is a floor for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from doxa.engine import Engine
from doxa.server.collect import segment_signature

KEY = "bench-webhook-key-0123456789"
SECRET = "bench-segment-shared-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): the server's own work per
    request, which the machine's other load does not inflate as it does wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(db: Path, port: int, signed: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DOXA_API_KEYS": f"bench:{KEY}:write"}
    if signed:
        env["DOXA_SEGMENT_SECRETS"] = f"bench:{SECRET}"
    return subprocess.Popen(
        [sys.executable, "-m", "doxa", "serve", "--db", f"sqlite:///{db}", "--port", str(port),
         "--model", "ollama/bench", "--log-level", "warning"], env=env)


async def wait_healthy(port: int, deadline_s: float = 30.0) -> None:
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status = await _answer(reader)
        writer.close()
        if status == "200":
            return
        await asyncio.sleep(0.1)
    raise SystemExit("doxa serve did not come up")


def call(n: int, users: int) -> bytes:
    return json.dumps({
        "type": "track", "event": "Report Exported", "userId": f"user-{n % users:04d}",
        "messageId": f"bench-{n:08d}", "timestamp": datetime.now(UTC).isoformat(),
        "properties": {"format": "csv", "rows": n},
        "context": {"library": {"name": "analytics-node", "version": "1.0.0"}}}).encode()


async def load(port: int, requests: int, seconds: float, concurrency: int, users: int,
               signed: bool) -> tuple[int, dict[str, int], list[float], float]:
    """(requests sent, statuses and errors counted, latencies in seconds, elapsed).

    The generator speaks HTTP/1.1 over kept-alive loopback connections itself, as `wrk`
    does: a full client library costs as much CPU per request as the server being
    measured, and both share this machine's cores."""
    sent = 0
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while sent < requests and time.monotonic() < stop_at:
                n = sent
                sent += 1
                body = call(n, users)
                signature = (f"X-Signature: {segment_signature(body, SECRET)}\r\n"
                             if signed else "")
                head = (f"POST /v1/collect/segment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
                        f"{signature}Content-Length: {len(body)}\r\n\r\n")
                began = time.perf_counter()
                try:
                    writer.write(head.encode() + body)
                    status = await _answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                    return
                latencies.append(time.perf_counter() - began)
                outcomes[status] = outcomes.get(status, 0) + 1
        finally:
            writer.close()

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent, outcomes, latencies, time.monotonic() - began


async def _answer(reader: asyncio.StreamReader) -> str:
    """One response's status code; its body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines
                   if line.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return lines[0].split(" ", 2)[1]


async def stored_events(db: Path) -> int:
    engine = Engine(store=f"sqlite:///{db}")
    try:
        summaries = await engine.store.buffer_summaries(now=datetime.now(UTC),
                                                        high_signal_types=frozenset())
        return sum(s.events for s in summaries)
    finally:
        await engine.close()


async def run(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="doxa-webhook-bench-") as scratch:
        db = Path(args.db) if args.db else Path(scratch) / "bench.db"
        port = free_port()
        server = start_server(db, port, args.signed)
        try:
            await wait_healthy(port)
            cpu_before, own_before = cpu_seconds(server.pid), time.process_time()
            sent, outcomes, latencies, elapsed = await load(
                port, args.requests, args.seconds, args.concurrency, args.users, args.signed)
            server_cpu = cpu_seconds(server.pid) - cpu_before
            own_cpu = time.process_time() - own_before
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        stored = await stored_events(db)
    accepted = outcomes.get("202", 0)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    print(f"single-event Segment deliveries to doxa serve (SQLite, 1 uvicorn worker), "
          f"{args.concurrency} connections, {args.users} users"
          f"{', signed (HMAC-SHA1 checked)' if args.signed else ''}")
    print(f"requests {sent} in {elapsed:.1f} s = {sent / elapsed:.0f} req/s; "
          f"answers {dict(sorted(outcomes.items()))}")
    if ordered:
        print(f"latency p50 {statistics.median(ordered) * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms")
    print(f"server CPU {server_cpu:.1f} s = {server_cpu / max(sent, 1) * 1000:.2f} ms a request "
          f"(one core's worth: {sent / server_cpu if server_cpu else 0:.0f} req/s); "
          f"generator CPU {own_cpu / max(sent, 1) * 1000:.2f} ms a request; "
          f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"events stored {stored} of {accepted} accepted")
    ok = accepted == sent and stored == sent
    print("PASS" if ok else "FAIL: an error, or an accepted event missing from the store")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--signed", action="store_true")
    parser.add_argument("--db", help="SQLite file to use (default: a temporary one)")
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(run(args)) else 1)


if __name__ == "__main__":
    main()
