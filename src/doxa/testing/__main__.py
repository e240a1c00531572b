"""`python -m doxa.testing`: serve the fake LLM provider on loopback until stopped.

Why a command: a new user without a key (and a test of the documentation's commands) can
then run the real `doxa ingest`, `doxa backfill --batch-api` or `doxa serve` against it with
`--base-url`, and see every step of doxa work with no model at all. The fake answers every
event that says something with a record quoting it ("Said: ..."), which is enough to see
the pipeline, never a judgement of the events.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from doxa.testing.fake_provider import FakeProvider


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m doxa.testing",
        description="Serve doxa's fake LLM provider (OpenAI and Anthropic wire formats, both "
                    "batch APIs) on loopback, until Ctrl-C or SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on "
                        "(default 127.0.0.1: keep it on loopback)")
    parser.add_argument("--port", type=int, default=8799, help="port (default 8799; 0 picks "
                        "a free one and prints it)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds to wait before each answer (default 0)")
    return parser.parse_args(argv)


async def _serve(provider: FakeProvider) -> None:
    """Start, say where (the line a script waits for), and run until a stop signal."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    await provider.start()
    sys.stdout.write(f"fake provider listening on {provider.base_url}\n")
    sys.stdout.flush()
    try:
        await stopped.wait()
    finally:
        await provider.stop()


def main(argv: list[str] | None = None) -> None:
    arguments = _arguments(argv)
    provider = FakeProvider(host=arguments.host, port=arguments.port,
                            latency_s=arguments.latency)
    asyncio.run(_serve(provider))


if __name__ == "__main__":
    main()
