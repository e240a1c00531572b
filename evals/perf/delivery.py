"""Reading a user's model at a decision point: in process (SQLite, PostgreSQL) and over HTTP.

    .venv/bin/python evals/perf/delivery.py inprocess [--store sqlite|postgres|all] [--reads 2000]
    .venv/bin/python evals/perf/delivery.py server-cpu [--store sqlite|postgres|all]
    .venv/bin/python evals/perf/delivery.py http [--store sqlite|postgres] [--readers 200]
        [--rates 250,500,1000,saturated] [--seconds 8] [--requests 8000] [--users 10]
        [--limit 100] [--path model|beliefs] [--revalidate]

The model is as large as an extracted model gets: 600 records, the per-kind cap
(`MergeConfig().max_records_per_kind`, 200) for each kind an extraction asks for (belief,
goal and preference; motivations and constraints come from links and observations), each
with three
evidence links (with quotes and their events stored) and two revisions, over four contexts,
a third of the preferences filling a schema dimension. In process, a decision point is
`engine.model(user)` then `beliefs(context=..., min_confidence=...)` and `value(dim)`;
each is timed alone and together, warm (the store already read the model once), and the
cold read and the first read after another engine's commit (a second engine on the same
database, standing for another process) are shown beside them.

Over HTTP, `doxa serve`'s app runs in its own process under uvicorn (as `doxa serve` runs
it) on loopback, over the same store, and this process is the load generator: `--readers`
tasks, each with its own keep-alive connection, ask `GET /v1/users/{user}/model` (the
default page of 100 records; `--path beliefs`: a decision point's listing, billing beliefs
at confidence 0.6 or more, 5 a page) for users taken in turn; with `--revalidate` each
reader sends the ETag it last got for a page as If-None-Match, as an HTTP cache in front of
delivery code would, and an unchanged page comes back as a bodiless 304. The generator
writes HTTP/1.1 itself, like `wrk`, so that its own CPU does not crowd out the server's on a
small machine; the server's CPU a request is read from /proc. Requests are due at a fixed total
rate (open loop: a reader still waiting for its last answer when its next request is due
sends it on return), and latency is measured from when the request was due, so a server
falling behind shows in the figure rather than slowing the generator down. Each rate runs
for at most `--seconds` and `--requests` (a request still due when the time is up is
counted as unsent, not sent late). `saturated` is the same readers never pausing:
its latency is queueing, readers / throughput (Little's law), and says what one server
process holds. PostgreSQL uses `DOXA_TEST_POSTGRES_URL` (`eval "$(scripts/pg-test-cluster.sh
start)"`); its benchmark users are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from doxa.core.merge import MergeConfig, make_record_id
from doxa.engine import Engine
from doxa.events.parse import Event
from doxa.model.records import EXTRACTED_KINDS, EvidenceLink, Record, Revision, UserModel

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONTEXTS = ("general", "billing", "security", "onboarding")
WORDS = ("sso", "okta", "salesforce", "billing", "annual", "monthly", "roi", "cfo", "payback",
         "security", "soc2", "slack", "jira", "export", "csv", "dashboard", "mobile", "api")
DIMENSION = "communication_style"
TENANT, KEY = "bench", "bench-key-0123456789abcdef"


def capped_model(user: str) -> tuple[UserModel, list[Event]]:
    """A model at the per-kind cap for every kind, and the events its evidence cites."""
    per_kind = MergeConfig().max_records_per_kind
    records, events = [], []
    for i in range(per_kind * len(EXTRACTED_KINDS)):
        kind = EXTRACTED_KINDS[i % len(EXTRACTED_KINDS)]
        words = " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(5))
        statement = f"{kind.title()} about {words} ({i})"
        at = T0 + timedelta(hours=i)
        cited = [Event(id=f"e{i}-{k}", user_id=user, type="chat_message",
                       timestamp=at + timedelta(minutes=k),
                       text=f"We talked about {words} again, point {k} of {i}")
                 for k in range(3)]
        events += cited
        confidence = 0.3 + 0.6 * ((i * 37) % 100) / 100
        dimension = DIMENSION if kind == "preference" and i % 9 == 2 else None
        records.append(Record(
            id=make_record_id(user, kind, statement, "seed"), user_id=user, kind=kind,
            statement=statement, context=CONTEXTS[i % len(CONTEXTS)], dimension=dimension,
            value=("bullets", "narrative")[i % 2] if dimension else None,
            confidence=confidence, valid_from=at, created_at=at,
            updated_at=at + timedelta(minutes=2),
            evidence=tuple(EvidenceLink(event_id=e.id, quote=(e.text or "")[:30],
                                        observed_at=e.timestamp) for e in cited),
            history=tuple(Revision(action=action, recorded_at=at + timedelta(minutes=k),
                                   observed_at=at, statement=statement,
                                   confidence=confidence, status="active",
                                   event_ids=(cited[k].id,))
                          for k, action in enumerate(("created", "reinforced")))))
    return UserModel(user_id=user, records=tuple(records)), events


async def seed(engine: Engine, users: list[str]) -> None:
    for user in users:
        model, events = capped_model(user)
        await engine.store.commit(model, expected_version=0, changes=[], events=events,
                                  processed_ids=[e.id for e in events])


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def timed(n: int, step: Callable[[], Awaitable[Any]]) -> list[float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        await step()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


async def in_process(url: str, reads: int) -> dict[str, tuple[float, float]]:
    user = f"bench-{uuid.uuid4().hex[:8]}"
    writer, reader = Engine(store=url), Engine(store=url)
    try:
        await seed(writer, [user])
        began = time.perf_counter()
        model = await reader.model(user)
        cold = (time.perf_counter() - began) * 1000
        assert len(model.records) == 600, len(model.records)
        await timed(20, lambda: reader.model(user))  # warm-up

        async def beliefs() -> None:
            model.beliefs(context="billing", min_confidence=0.6)

        async def value() -> None:
            model.value(DIMENSION)

        async def decision() -> None:
            found = await reader.model(user)
            found.beliefs(context="billing", min_confidence=0.6)
            found.value(DIMENSION)

        figures = {"model()": percentiles(await timed(reads, lambda: reader.model(user))),
                   "beliefs(context, min_confidence)": percentiles(await timed(reads, beliefs)),
                   "value(dim)": percentiles(await timed(reads, value)),
                   "decision point (all three)": percentiles(await timed(reads, decision))}
        after_commit = []
        record = model.beliefs()[0]
        for n in range(10):  # another process commits; the next read must see it
            await writer.record_outcome(user, record.id, "engaged", event_id=f"o{n}")
            began = time.perf_counter()
            seen = await reader.model(user)
            after_commit.append((time.perf_counter() - began) * 1000)
            assert seen.version == n + 2
        figures["first read after another engine's commit"] = percentiles(after_commit)
        figures["cold read (nothing cached)"] = (cold, cold)
        return figures
    finally:
        await writer.delete_user(user)
        await writer.close()
        await reader.close()


def print_in_process(store: str, figures: dict[str, tuple[float, float]], reads: int) -> None:
    print(f"\n{store}: 600-record model, {reads} warm reads each")
    print(f"{'':44} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (p50, p99) in figures.items():
        print(f"{name:44} {p50:>8.3f} {p99:>8.3f}")


# -- over HTTP -------------------------------------------------------------------------------


def serve(url: str, port: int) -> None:
    """The server process: `doxa serve`'s app and uvicorn configuration over `url`."""
    import uvicorn

    from doxa.server.app import create_app
    from doxa.server.auth import KeyRing

    ring = KeyRing()
    ring.add_key(TENANT, KEY)
    app = create_app(Engine(store=url), ring, close_engine=True)
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                  server_header=False, proxy_headers=False)).run()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until_up(base: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base) as probe:
        while True:
            try:
                if (await probe.get("/v1/health")).status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, limit=2**22)


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
              etag: str | None = None) -> tuple[int, bytes, str | None]:
    """One GET on a kept-alive connection: (status, body, ETag).

    The generator writes and reads HTTP/1.1 itself, as `wrk` does: a client library
    (httpx) spends as much CPU a request as the server being measured, and both share this
    machine's two cores, so it would measure the client."""
    validator = f"If-None-Match: {etag}\r\n" if etag else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}"
                 f"\r\n{validator}\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
    headers = {k.strip().lower(): v.strip() for k, v in fields.items()}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(head[0].split(" ", 2)[1]), body, headers.get("etag")


async def load(port: int, paths: list[str], readers: int, rate: float | None, seconds: float,
               requests: int, revalidate: bool) -> dict[str, float]:
    """`readers` connections asking for `paths` in turn at `rate` requests per second in
    total (None: as fast as answers come), for at most `seconds` and `requests`; with
    `revalidate`, each reader sends the ETag it last got for a path as If-None-Match."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    unsent = 0
    not_modified = 0
    body_bytes = 0
    conns = [await connect(port) for _ in range(readers)]
    for path in paths:  # warm: every page rendered once
        assert (await get(*conns[0], path))[0] == 200, path
    start = time.perf_counter() + 0.05
    stop = start + seconds

    async def reader(i: int) -> None:
        nonlocal errors, issued, unsent, not_modified, body_bytes
        held: dict[str, str | None] = {}
        n = i
        while True:
            due = start + n / rate if rate else time.perf_counter()
            if due >= stop or issued >= requests:
                return
            if time.perf_counter() >= stop:  # due in time, but the readers fell behind
                unsent += 1
                n += readers
                continue
            issued += 1
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            path = paths[n % len(paths)]
            status, body, etag = await get(*conns[i], path, held.get(path))
            latencies.append((time.perf_counter() - due) * 1000)
            body_bytes += len(body)
            if status == 304 and revalidate and etag == held.get(path):
                not_modified += 1
            elif status != 200 or not body.endswith(b"}") or (revalidate and not etag):
                errors += 1
            if revalidate:
                held[path] = etag
            n += readers

    began = time.perf_counter()
    await asyncio.gather(*(reader(i) for i in range(readers)))
    elapsed = time.perf_counter() - began
    for _, writer in conns:
        writer.close()
    p50, p99 = percentiles(latencies)
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50": p50, "p99": p99, "unsent": unsent, "not_modified": not_modified,
            "kb": body_bytes / max(len(latencies), 1) / 1024}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc): the server's own cost a request,
    which the rest of the machine's load does not inflate as it does latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def over_http(url: str, users_n: int, readers: int, rates: list[float | None],
                    seconds: float, requests: int, limit: int | None, kind: str,
                    revalidate: bool) -> None:
    users = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(users_n)]
    seeder = Engine(store=url)
    await seed(seeder, [f"{TENANT}/{u}" for u in users])
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "serve-only", "--url", url, "--port", str(port), env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_until_up(base)
        query = "" if limit is None else f"?limit={limit}"
        if kind == "beliefs":
            query = f"?context=billing&min_confidence=0.6&limit={limit or 5}"
        paths = [f"/v1/users/{u}/{kind}{query}" for u in users]
        print(f"\nGET /v1/users/{{user}}/{kind}{query} ({url.split(':')[0]}, 600-record "
              f"models, {users_n} users), {readers} readers on loopback"
              f"{', If-None-Match with the last ETag' if revalidate else ''}; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at "
              f"{datetime.now(UTC):%H:%M} UTC")
        print(f"{'target rps':>10} {'requests':>9} {'errors':>7} {'304s':>6} {'held rps':>9} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'KB/answer':>10} {'server CPU ms/req':>18} "
              f"{'due, unsent':>12}")
        for rate in rates:
            cpu_before = cpu_seconds(server.pid)
            r = await load(port, paths, readers, rate, seconds, requests, revalidate)
            cpu = (cpu_seconds(server.pid) - cpu_before) * 1000 / max(r["requests"], 1)
            print(f"{'saturated' if rate is None else f'{rate:.0f}':>10} {r['requests']:>9.0f} "
                  f"{r['errors']:>7.0f} {r['not_modified']:>6.0f} {r['rps']:>9.0f} "
                  f"{r['p50']:>8.2f} {r['p99']:>8.2f} {r['kb']:>10.1f} {cpu:>18.3f} "
                  f"{r['unsent']:>12.0f}")
            sys.stdout.flush()
    finally:
        server.terminate()
        await server.wait()
        for u in users:
            await seeder.delete_user(f"{TENANT}/{u}")
        await seeder.close()


async def server_cpu(url: str, requests: int) -> None:
    """CPU the app spends a request, kept pages against rendering each time: the app over
    httpx's ASGI transport in this process, so no socket, no other process and (largely)
    no wait for a CPU is counted."""
    from doxa.server.app import create_app
    from doxa.server.auth import KeyRing
    from doxa.server.settings import ServerLimits

    user = f"bench-{uuid.uuid4().hex[:8]}"
    engine = Engine(store=url)
    await seed(engine, [f"{TENANT}/{user}"])
    ring = KeyRing()
    ring.add_key(TENANT, KEY)
    headers = {"Authorization": f"Bearer {KEY}"}
    print(f"\nserver CPU a request, in process ({url.split(':')[0]}, {requests} requests)")
    print(f"{'path':70} {'kept ms':>8} {'rendered ms':>12}")
    paths = ["/v1/health", f"/v1/users/{user}/model", f"/v1/users/{user}/model?limit=10",
             f"/v1/users/{user}/beliefs?context=billing&min_confidence=0.6&limit=5"]
    cpu: dict[tuple[str, int], float] = {}
    for budget in (64 * 2**20, 0):
        app = create_app(engine, ring, ServerLimits(read_cache_bytes=budget))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://doxa") as client:
            for path in paths:
                await client.get(path, headers=headers)
                began = time.process_time()
                for _ in range(requests):
                    await client.get(path, headers=headers)
                cpu[path, budget] = (time.process_time() - began) * 1000 / requests
    for path in paths:
        shown = path.replace(user, "{user}")
        print(f"{shown:70} {cpu[path, 64 * 2**20]:>8.2f} {cpu[path, 0]:>12.2f}")
    await engine.delete_user(f"{TENANT}/{user}")
    await engine.close()


def store_urls(choice: str, tmp: Path) -> dict[str, str]:
    pg = os.environ.get("DOXA_TEST_POSTGRES_URL")
    urls = {"sqlite": f"sqlite:///{tmp / 'delivery.db'}"}
    if pg:
        urls["postgres"] = pg
    elif choice in ("postgres", "all"):
        sys.exit("PostgreSQL needs DOXA_TEST_POSTGRES_URL: "
                 'eval "$(scripts/pg-test-cluster.sh start)"')
    return urls if choice == "all" else {choice: urls[choice]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    inproc = sub.add_parser("inprocess", help="engine.model, beliefs and value in process")
    inproc.add_argument("--store", choices=["sqlite", "postgres", "all"], default="all")
    inproc.add_argument("--reads", type=int, default=2000)
    http = sub.add_parser("http", help="GET /v1/users/{user}/model under concurrent readers")
    http.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    http.add_argument("--readers", type=int, default=200)
    http.add_argument("--rates", default="250,500,1000,saturated",
                      help="total requests per second, comma-separated; 'saturated': no pause")
    http.add_argument("--seconds", type=float, default=8.0, help="at most, per rate")
    http.add_argument("--requests", type=int, default=8000, help="at most, per rate")
    http.add_argument("--users", type=int, default=10)
    http.add_argument("--limit", type=int, default=None,
                      help="records a page (default: the server's, 100; beliefs: 5)")
    http.add_argument("--path", choices=["model", "beliefs"], default="model",
                      help="model: a page of the whole model; beliefs: a decision point's "
                      "listing (context=billing, min_confidence=0.6)")
    http.add_argument("--revalidate", action="store_true",
                      help="send the last ETag as If-None-Match (304 while unchanged)")
    asgi = sub.add_parser("server-cpu", help="the app's CPU a request, kept and rendered")
    asgi.add_argument("--store", choices=["sqlite", "postgres", "all"], default="sqlite")
    asgi.add_argument("--requests", type=int, default=200)
    only = sub.add_parser("serve-only", help=argparse.SUPPRESS)
    only.add_argument("--url", required=True)
    only.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.mode == "serve-only":
        serve(args.url, args.port)
        return
    with tempfile.TemporaryDirectory() as tmp:
        urls = store_urls(args.store, Path(tmp))
        if args.mode == "inprocess":
            for store, url in urls.items():
                print_in_process(store, asyncio.run(in_process(url, args.reads)), args.reads)
            return
        if args.mode == "server-cpu":
            for url in urls.values():
                asyncio.run(server_cpu(url, args.requests))
            return
        rates = [None if r.strip() == "saturated" else float(r) for r in args.rates.split(",")]
        for url in urls.values():
            asyncio.run(over_http(url, args.users, args.readers, rates, args.seconds,
                                  args.requests, args.limit, args.path, args.revalidate))


if __name__ == "__main__":
    main()
