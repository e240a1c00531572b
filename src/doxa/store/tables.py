"""The tables every SQL store holds, written once for SQLite and PostgreSQL.

Both stores keep the same rows (records whole as JSON plus their evidence and revisions as
rows, the user's events, the ledger of processed ids, the response cache, erasure
generations), so a model moves between them by export and ingest alone. The two dialects
differ only in a few column types and in the name of the version table (PostgreSQL's is
prefixed, since a shared database may hold other applications' tables): those are the
parameters of `schema`, and everything else is this one text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from doxa.calibration.outcomes import OutcomeCount
from doxa.model.records import Record

SCHEMA_VERSION: Final = 1
USER_TABLES: Final = ("records", "evidence", "revisions", "events", "ledger", "cache",
                      "outcome_counts", "users")
"""Every table with rows about one user, in the order `delete_user` empties them."""


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL stores' DDL."""

    version_table: str
    counter: str
    """The type of a count that only grows (a model version, an erasure generation)."""
    real: str


SQLITE: Final = Dialect(version_table="schema_version", counter="INTEGER", real="REAL")
POSTGRES: Final = Dialect(version_table="doxa_schema_version", counter="BIGINT",
                          real="DOUBLE PRECISION")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {version_table} (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, version {counter} NOT NULL);
CREATE TABLE IF NOT EXISTS records (
  user_id TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
  context TEXT NOT NULL, confidence {real} NOT NULL, statement TEXT NOT NULL,
  content_hash TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (user_id, record_id));
CREATE TABLE IF NOT EXISTS evidence (
  user_id TEXT NOT NULL, record_id TEXT NOT NULL, event_id TEXT NOT NULL,
  polarity TEXT NOT NULL, basis TEXT NOT NULL, quote TEXT NOT NULL, observed_at TEXT NOT NULL,
  batch_id TEXT NOT NULL, PRIMARY KEY (user_id, record_id, event_id),
  FOREIGN KEY (user_id, record_id) REFERENCES records (user_id, record_id) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS revisions (
  user_id TEXT NOT NULL, record_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (user_id, record_id, seq),
  FOREIGN KEY (user_id, record_id) REFERENCES records (user_id, record_id) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS events (
  user_id TEXT NOT NULL, event_id TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (user_id, event_id));
CREATE TABLE IF NOT EXISTS ledger (
  user_id TEXT NOT NULL, event_id TEXT NOT NULL, processed_at TEXT NOT NULL,
  PRIMARY KEY (user_id, event_id));
CREATE TABLE IF NOT EXISTS cache (
  key TEXT PRIMARY KEY, user_id TEXT NOT NULL, value TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cache_user ON cache (user_id);
CREATE TABLE IF NOT EXISTS erasures (user_key TEXT PRIMARY KEY, generation {counter} NOT NULL);
CREATE TABLE IF NOT EXISTS outcome_counts (
  user_id TEXT NOT NULL, profile TEXT NOT NULL, model TEXT NOT NULL,
  prompt_version TEXT NOT NULL, kind TEXT NOT NULL, bin INTEGER NOT NULL,
  n {counter} NOT NULL, right_n {counter} NOT NULL, confidence_sum {real} NOT NULL,
  PRIMARY KEY (user_id, profile, model, prompt_version, kind, bin));
"""


def schema(dialect: Dialect) -> tuple[str, ...]:
    """The CREATE statements, one string each, for a store to run in order."""
    text = _SCHEMA.format(version_table=dialect.version_table, counter=dialect.counter,
                          real=dialect.real)
    return tuple(s.strip() for s in text.split(";") if s.strip())


def content_hash(record: Record) -> str:
    """What the `content_hash` column holds: a commit rewrites a record's rows only when
    this changed."""
    return hashlib.sha256(record.model_dump_json().encode()).hexdigest()[:24]


OUTCOME_COLUMNS: Final = ("user_id, profile, model, prompt_version, kind, bin, n, right_n, "
                          "confidence_sum")


def add_outcomes_sql(placeholder: str) -> str:
    """The statement that adds one row of outcome counts to what is stored (both dialects
    speak `ON CONFLICT ... DO UPDATE`; they differ only in the parameter mark)."""
    marks = ", ".join([placeholder] * 9)
    return (f"INSERT INTO outcome_counts ({OUTCOME_COLUMNS}) VALUES ({marks}) "
            "ON CONFLICT (user_id, profile, model, prompt_version, kind, bin) DO UPDATE SET "
            "n = outcome_counts.n + excluded.n, "
            "right_n = outcome_counts.right_n + excluded.right_n, "
            "confidence_sum = outcome_counts.confidence_sum + excluded.confidence_sum")


def outcome_row(count: OutcomeCount) -> tuple[str, str, str, str, str, int, int, int, float]:
    return (count.user_id, count.profile, count.model, count.prompt_version, count.kind,
            count.bin, count.n, count.right, count.confidence_sum)


def outcome_count(row: Sequence[Any]) -> OutcomeCount:
    """A row selected as OUTCOME_COLUMNS, as the value it stores."""
    return OutcomeCount(user_id=row[0], profile=row[1], model=row[2], prompt_version=row[3],
                        kind=row[4], bin=int(row[5]), n=int(row[6]), right=int(row[7]),
                        confidence_sum=float(row[8]))
