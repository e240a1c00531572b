"""`doxa serve`: run the HTTP API with uvicorn. FastAPI and uvicorn are imported only here,
inside the command, so the rest of the CLI works without the `server` extra."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from doxa.errors import DoxaError

err_console = Console(stderr=True)
DEFAULT_DB = os.environ.get("DOXA_DB", "doxa.db")
DEFAULT_MODEL = os.environ.get("DOXA_MODEL", "openai/gpt-4o-mini")
INSTALL_HINT = "doxa serve needs the server extra: pip install 'doxa[server]'"


def serve(
    db: Annotated[str, typer.Option("--db", help="SQLite path or store URL (sqlite:///x.db, "
                                    "postgresql://..., memory://)")] = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    model: Annotated[str, typer.Option("--model", "-m", help="provider/model that extracts "
                                       "from ingested events")] = DEFAULT_MODEL,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server "
                                                 "URL (vLLM, llama.cpp)")] = None,
    schema: Annotated[Path | None, typer.Option("--schema", help="model schema (YAML/TOML): "
                                                "extract only its dimensions")] = None,
    keys: Annotated[Path | None, typer.Option("--keys", help="keys file: 'tenant sha256:<hex> "
                    "scopes' lines (default DOXA_API_KEYS_FILE); DOXA_API_KEYS adds "
                    "tenant:key pairs")] = None,
    max_body_bytes: Annotated[int, typer.Option(help="larger request bodies get 413")] = 1_048_576,
    max_events: Annotated[int, typer.Option(help="events per ingest request")] = 1000,
    concurrency: Annotated[int, typer.Option(help="ingests (LLM calls) at once")] = 4,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    print_openapi: Annotated[bool, typer.Option("--print-openapi", help="print the OpenAPI "
                             "document and exit")] = False,
    new_key: Annotated[str | None, typer.Option("--new-key", metavar="TENANT", help="print a "
                       "fresh API key for TENANT and its keys-file line, and exit")] = None,
) -> None:
    """Serve user models over an authenticated HTTP API (OpenAPI at /openapi.json).

    Every /v1/users call needs `Authorization: Bearer <key>`; a key sees only its tenant's
    users. Keys come from --keys / DOXA_API_KEYS_FILE (hashes only) and DOXA_API_KEYS.
    """
    if new_key is not None:
        _print_new_key(new_key)
        return
    try:
        import uvicorn

        from doxa.server.app import create_app, openapi_document
        from doxa.server.auth import load_keys
        from doxa.server.settings import ServerLimits
    except ImportError:
        err_console.print(f"[red]error:[/red] {escape(INSTALL_HINT)}")
        raise typer.Exit(1) from None
    from doxa.engine import Engine

    try:
        limits = ServerLimits(max_body_bytes=max_body_bytes, max_events=max_events,
                              max_concurrent_ingests=concurrency)
        if print_openapi:
            sys.stdout.write(json.dumps(openapi_document(limits), indent=2) + "\n")
            return
        ring = load_keys(keys, os.environ)
        if not len(ring):
            _fail("no API keys: pass --keys FILE (lines 'tenant sha256:<hex>', see "
                  "`doxa serve --new-key TENANT`) or set DOXA_API_KEYS=tenant:key")
        engine = Engine(model=model, store=db if "://" in db else f"sqlite:///{db}",
                        base_url=base_url, schema=schema)
        _ = engine.extractor  # a missing provider key fails now, not at the first ingest
    except (DoxaError, ValueError) as exc:
        _fail(str(exc))
    err_console.print(f"doxa serving {engine.spec.label} on http://{host}:{port} "
                      f"({len(ring)} key(s), tenants: {', '.join(sorted(ring.tenants))})")
    app = create_app(engine, ring, limits, close_engine=True)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                  server_header=False, proxy_headers=False)).run()


def _print_new_key(tenant: str) -> None:
    from doxa.server.auth import KeyRing, hash_key
    from doxa.server.auth import new_key as make_key

    key = make_key()
    try:
        KeyRing().add_hashed(tenant, hash_key(key))
    except DoxaError as exc:
        _fail(str(exc))
    sys.stdout.write(f"key (give it to the client; it is not stored): {key}\n"
                     f"line for the keys file: {tenant} {hash_key(key)} read,write,delete\n")


def _fail(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)
