"""`doxa serve`: run the HTTP API with uvicorn. FastAPI and uvicorn are imported only here,
inside the command, so the rest of the CLI works without the `server` extra."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from doxa.cli.options import (
    DEFAULT_DB,
    DEFAULT_MODEL,
    BaseUrlOpt,
    DbOpt,
    ModelOpt,
    SchemaOpt,
    WhyOpt,
    store_url,
)
from doxa.cli.terminal import err_console, fail
from doxa.errors import DoxaError

INSTALL_HINT = "doxa serve needs the server extra: pip install 'doxa[server]'"


def serve(
    db: DbOpt = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8080,
    model: ModelOpt = DEFAULT_MODEL,
    base_url: BaseUrlOpt = None,
    schema: SchemaOpt = None,
    why: WhyOpt = False,
    keys: Annotated[Path | None, typer.Option("--keys", help="keys file: 'tenant sha256:<hex> "
                    "scopes' lines (default DOXA_API_KEYS_FILE); DOXA_API_KEYS adds "
                    "tenant:key pairs")] = None,
    max_body_bytes: Annotated[int, typer.Option(
        min=1, help="larger request bodies get 413")] = 1_048_576,
    max_events: Annotated[int, typer.Option(min=1, help="events per ingest request")] = 1000,
    concurrency: Annotated[int, typer.Option(min=1, help="ingests (LLM calls) at once")] = 4,
    read_cache_mb: Annotated[int, typer.Option(
        min=0, help="MiB of rendered model pages kept for repeated reads between commits "
        "(0: none)")] = 64,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    print_openapi: Annotated[bool, typer.Option("--print-openapi", metavar="",
                             help="print the OpenAPI "
                             "document and exit")] = False,
    new_key: Annotated[str | None, typer.Option("--new-key", metavar="TENANT", help="mint an "
                       "API key for TENANT, print it once and exit; with --keys FILE (or "
                       "DOXA_API_KEYS_FILE) its hash is appended to FILE, otherwise the "
                       "keys-file line is printed too")] = None,
) -> None:
    """Serve user models over an authenticated HTTP API (OpenAPI at /openapi.json).

    Every /v1/users call needs `Authorization: Bearer <key>`; a key sees only its tenant's
    users. Keys come from --keys / DOXA_API_KEYS_FILE (hashes only) and DOXA_API_KEYS.
    The /v1/collect webhooks (Segment, PostHog, RudderStack) take the same keys; set
    DOXA_SEGMENT_SECRETS=tenant:secret to require Segment's signature for a tenant.
    """
    if new_key is not None:
        _mint_key(new_key, keys or os.environ.get("DOXA_API_KEYS_FILE"))
        return
    try:
        import uvicorn

        from doxa.server.app import create_app, openapi_document
        from doxa.server.auth import load_keys
        from doxa.server.collect import parse_segment_secrets
        from doxa.server.settings import ServerLimits
    except ImportError:
        fail(INSTALL_HINT)
    from doxa.engine import Engine
    from doxa.llm.providers import parse_provider, require_credentials

    try:
        limits = ServerLimits(max_body_bytes=max_body_bytes, max_events=max_events,
                              max_concurrent_ingests=concurrency,
                              read_cache_bytes=read_cache_mb * 2**20)
        if print_openapi:
            sys.stdout.write(json.dumps(openapi_document(limits), indent=2) + "\n")
            return
        # A missing provider key fails now, before a store is created or a client waits.
        require_credentials(parse_provider(model, base_url))
        ring = load_keys(keys, os.environ)
        if not len(ring):
            fail("no API keys: pass --keys FILE (lines 'tenant sha256:<hex>', see "
                  "`doxa serve --new-key TENANT`) or set DOXA_API_KEYS=tenant:key")
        segment_secrets = parse_segment_secrets(os.environ.get("DOXA_SEGMENT_SECRETS", ""))
        engine = Engine(model=model, store=store_url(db),
                        base_url=base_url, schema=schema, why=why)
    except (DoxaError, ValueError) as exc:
        fail(exc)
    err_console.print(f"doxa serving {engine.spec.label} on http://{host}:{port} "
                      f"({len(ring)} key(s), tenants: {', '.join(sorted(ring.tenants))})")
    app = create_app(engine, ring, limits, close_engine=True, segment_secrets=segment_secrets)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                  server_header=False, proxy_headers=False)).run()


def _mint_key(tenant: str, keys_file: str | Path | None) -> None:
    """Make one key and keep only its hash: printed once, the hash written where the server
    reads it. One command, one key: minting again for the same file adds a second key
    rather than replacing the hash of the key a client already holds."""
    from doxa.server.auth import KeyRing, hash_key, new_key

    key = new_key()
    line = f"{tenant} {hash_key(key)} read,write,delete\n"
    try:
        KeyRing().add_hashed(tenant, hash_key(key))
    except DoxaError as exc:
        fail(exc)
    if keys_file is None:
        sys.stdout.write(f"key (give it to the client; it is not stored): {key}\n"
                         f"line for the keys file: {line}")
        return
    path = Path(keys_file)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a",
                       encoding="utf-8") as fh:
            fh.write(line)
    except OSError as exc:
        fail(f"cannot write the keys file {path}: {exc.strerror}")
    sys.stdout.write(f"{key}\n")
    err_console.print(f"added a key for tenant {tenant} to {path} (only its hash); the key "
                      "above is shown once: give it to the client now")
