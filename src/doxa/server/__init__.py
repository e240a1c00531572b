"""`doxa serve`: the user model over an authenticated HTTP API (extra `doxa[server]`).

`create_app(engine, keys)` in `doxa.server.app` builds the FastAPI application; this
package imports FastAPI only there, so `doxa` works without the extra.
"""
