"""Events: the flow's input, checked before anything else sees them.

Every way into doxa (the Python API, `doxa ingest`, the HTTP server) turns raw input into
`Event`s here: parsed and validated field by field (`fields`, `parse`), personal data
masked before it can reach a prompt or a store (`redaction`), and large files grouped by
user on disk (`spool`) so a file's size never bounds memory. Nothing downstream re-checks
an event, which is why this package comes first and depends on no other doxa layer.
"""
