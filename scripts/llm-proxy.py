#!/usr/bin/env python3
"""Spread OpenAI-compatible calls over several identical local LLM servers.

A dev tool for long eval runs on a CPU box: llama.cpp serves one request at a time, so
`doxa eval run --concurrency 2` against two servers (one thread each) halves the wall time.
Each request goes to the server with the fewest requests in flight.

    python scripts/llm-proxy.py 8720 http://127.0.0.1:8713 http://127.0.0.1:8714
    doxa eval run fixtures/eval --base-url http://127.0.0.1:8720/v1 --concurrency 2 ...
"""

from __future__ import annotations

import sys

from aiohttp import ClientSession, ClientTimeout, web

UPSTREAMS = sys.argv[2:]
in_flight = dict.fromkeys(UPSTREAMS, 0)


async def forward(request: web.Request) -> web.StreamResponse:
    upstream = min(UPSTREAMS, key=lambda u: in_flight[u])
    in_flight[upstream] += 1
    try:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length")}
        async with ClientSession(timeout=ClientTimeout(total=3600)) as session, \
                session.request(request.method, upstream + request.path_qs, data=body,
                                headers=headers) as answer:
            data = await answer.read()
            return web.Response(body=data, status=answer.status,
                                content_type=answer.content_type)
    finally:
        in_flight[upstream] -= 1


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
