"""Runs: drivers that feed many users through the engine, not pipelines of their own.

`ingest` takes a file's users through the engine on this machine (what `doxa ingest`
runs), `distributed` spreads them over Ray workers sharing one store, and `backfill`
sends a history through a provider's batch API in resumable rounds. Each owns how work
is scheduled (concurrency, rounds, state files); the engine owns what happens to one
user's events.
"""
