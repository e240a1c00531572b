"""The HTTP API: the user model over authenticated HTTP (extra `doxa[server]`).

`create_app(engine, keys)` in `doxa.server.app` builds the FastAPI application; routes,
request schemas, API keys and tenancy, request limits and problem responses each have a
module here. No command-line code lives in this package: `doxa serve` (doxa.cli.serve)
builds an engine and a key ring and hands them to `create_app`. FastAPI is imported only
by these modules, so `doxa` works without the extra.
"""
