"""Peak memory of `doxa ingest` streaming a large JSONL file, for several file sizes.

    .venv/bin/python evals/perf/memory_stream.py [--sizes-mb 64 256 1024]

Each size runs in a fresh process (peak RSS is per process): the file is generated on disk
(many users, interleaved, mostly page views with some chat), then ingested by the real CLI
path (spool → ingest_many → SQLite) with an in-process LLM stand-in that answers at once,
so the figure is doxa's own memory. Flat means: no growth with file size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r'''
import asyncio, json, resource, sys, time
sys.path.insert(0, "evals/perf")
from overhead import InstantLLM
from doxa.engine import Engine
from doxa.events.spool import UserSpool
async def main(path, db):
    started = time.monotonic()
    engine = Engine(model="openai/bench", store=f"sqlite:///{db}", client=InstantLLM())
    with UserSpool.from_file(path) as spool:
        users = spool.user_count()
        results = await engine.ingest_many(spool.users(), concurrency=4, keep_results=False)
    await engine.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"users": users, "events": spool.events, "peak_rss_mb": peak_mb,
                      "seconds": time.monotonic() - started,
                      "errors": sum(isinstance(r, BaseException) for r in results.values())}))
asyncio.run(main(sys.argv[1], sys.argv[2]))
'''


def write_file(path: Path, size_mb: int) -> int:
    target = size_mb * 1024 * 1024
    written = n = 0
    with path.open("w") as fh:
        while written < target:
            user = f"u{n % 20000:05d}"
            is_chat = n % 10 == 0
            event = {"id": f"e{n}", "user_id": user, "type": "chat_message" if is_chat
                     else "page_view", "timestamp": f"2026-03-01T{(n // 3600) % 24:02d}:"
                     f"{(n // 60) % 60:02d}:{n % 60:02d}Z",
                     "text": f"We need SSO and exports for team {n % 97}" if is_chat else None,
                     "properties": {} if is_chat else {"path": f"/docs/page-{n % 50}"}}
            line = json.dumps(event) + "\n"
            fh.write(line)
            written += len(line)
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    print(f"{'file MB':>8} {'events':>10} {'users':>7} {'peak RSS MB':>12} {'seconds':>8}")
    for size in args.sizes_mb:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "events.jsonl"
            write_file(path, size)
            out = subprocess.run([sys.executable, "-c", WORKER, str(path), str(Path(tmp) / "d.db")],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{size:>8} {r['events']:>10} {r['users']:>7} {r['peak_rss_mb']:>12.0f} "
                  f"{r['seconds']:>8.0f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
