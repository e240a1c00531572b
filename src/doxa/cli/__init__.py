"""The `doxa` command line: a thin typer app over the engine, the runs and the eval harness.

`main` holds the app and the read commands; each command with helpers of its own has a
module (`ingest`, `backfill`, `serve`, `eval`, `demo`). What they share is defined once:
defaults and options in `options`, consoles and the one error helper (`print_error`, with
`fail` and `exit_on_error` on top) in `terminal`, tables in `render`. Nothing here decides
anything about users; a command reads flags, calls a library function, prints the result
as text or, with `--json`, as JSON.
"""
