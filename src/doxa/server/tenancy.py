"""Tenant namespacing: the API's user ids are stored as `<tenant>/<user id>`.

The store has one flat user-id space. The server prefixes every user id with the caller's
tenant and a `/`, and `/` is a character neither a tenant id nor an API user id may hold
(both are checked against a pattern before anything is read or written). So a key of
tenant A names only `A/<something>` in the store: no user id it can send reaches
`B/<anything>`, and asking for B's user `x` is asking for A's user `x`, which gives the
same 404 as any user A never had. The same store can also hold users written by
`doxa ingest` directly (ids without a `/`), which no key can reach.

Everything that leaves the server is turned back into the caller's own ids.
"""

from __future__ import annotations

import re

from doxa.engine import IngestResult
from doxa.events.fields import USER_ID_PATTERN
from doxa.model.records import Explanation, Record

__all__ = ["RECORD_ID_PATTERN", "SEPARATOR", "USER_ID_PATTERN", "public_explanation",
           "public_record", "public_result", "public_text", "scoped"]

RECORD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
SEPARATOR = "/"
_USER_ID = re.compile(USER_ID_PATTERN)


def scoped(tenant: str, user_id: str) -> str:
    """The store's id for a tenant's user; refuses ids that could leave the namespace."""
    if SEPARATOR in tenant or not _USER_ID.fullmatch(user_id):
        raise ValueError(f"user id '{user_id}' does not match {USER_ID_PATTERN}")
    return f"{tenant}{SEPARATOR}{user_id}"


def public_record(record: Record, user_id: str) -> Record:
    return record.model_copy(update={"user_id": user_id})


def public_explanation(explanation: Explanation, user_id: str) -> Explanation:
    evidence = [
        item.model_copy(update={"event": item.event.model_copy(update={"user_id": user_id})})
        if item.event is not None else item
        for item in explanation.evidence
    ]
    return Explanation(record=public_record(explanation.record, user_id), evidence=evidence)


def public_result(result: IngestResult, user_id: str) -> IngestResult:
    return result.model_copy(update={"user_id": user_id})


def public_text(text: str, store_id: str, user_id: str) -> str:
    """A message with the store's id for the user replaced by the caller's own."""
    return text.replace(store_id, user_id)
