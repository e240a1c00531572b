"""The tables every SQL store holds, written once for SQLite and PostgreSQL.

Both stores keep the same rows (records whole as JSON plus their evidence and revisions as
rows, the user's events, the ledger of processed ids, the response cache, the buffer of
events waiting for extraction, erasure generations), so a model moves between them by
export and ingest alone. The two dialects differ only in a few column types and in the
name of the version table (PostgreSQL's is prefixed, since a shared database may hold
other applications' tables): those are the parameters of `schema`, and everything else is
this one text.

Buffer times (`added_at`, `claimed_until`) are fixed-width UTC text (`buffer_time`), so both
dialects compare them as strings in the same order as the instants they name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from doxa.calibration.outcomes import OutcomeCount
from doxa.core.flush import BufferSummary
from doxa.model.records import Record

SCHEMA_VERSION: Final = 1
USER_TABLES: Final = ("records", "evidence", "revisions", "events", "ledger", "cache", "buffer",
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
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, version {counter} NOT NULL,
  commit_id TEXT);
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
CREATE TABLE IF NOT EXISTS buffer (
  user_id TEXT NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL, tokens INTEGER NOT NULL,
  added_at TEXT NOT NULL, claim TEXT, claimed_until TEXT, data TEXT NOT NULL,
  PRIMARY KEY (user_id, event_id));
CREATE INDEX IF NOT EXISTS buffer_claim ON buffer (claim);
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


def buffer_time(at: datetime) -> str:
    """An instant as the buffer table keeps it: UTC, fixed width, ordered as text."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_buffer_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def buffer_summary_query(placeholder: Callable[[str], str], now: datetime,
                         high_signal_types: Set[str]) -> tuple[str, dict[str, Any]]:
    """The query behind `buffer_summaries` and its named parameters, for either dialect
    (`placeholder("now")` is `:now` in SQLite, `%(now)s` in PostgreSQL). Per user: free
    rows (unclaimed, or their lease ended before now), their tokens, the free high-signal
    rows, the oldest and newest free arrival, and the rows under a live claim."""
    types = {f"t{i}": t for i, t in enumerate(sorted(high_signal_types))}
    free = f"(claim IS NULL OR claimed_until < {placeholder('now')})"
    high = (f"type IN ({', '.join(placeholder(k) for k in types)})" if types else "1 = 0")
    sql = (f"SELECT user_id, SUM(CASE WHEN {free} THEN 1 ELSE 0 END), "
           f"SUM(CASE WHEN {free} THEN tokens ELSE 0 END), "
           f"SUM(CASE WHEN {free} AND {high} THEN 1 ELSE 0 END), "
           f"MIN(CASE WHEN {free} THEN added_at END), "
           f"MAX(CASE WHEN {free} THEN added_at END), "
           f"SUM(CASE WHEN {free} THEN 0 ELSE 1 END) FROM buffer GROUP BY user_id "
           "ORDER BY user_id")
    return sql, {"now": buffer_time(now), **types}


def buffer_summary(row: Sequence[Any]) -> BufferSummary:
    """One row of `buffer_summary_query` as a summary."""
    user, events, tokens, high, oldest, newest, claimed = row
    return BufferSummary(user_id=user, events=int(events), tokens=int(tokens),
                         high_signal=int(high),
                         oldest=parse_buffer_time(oldest) if oldest else None,
                         newest=parse_buffer_time(newest) if newest else None,
                         claimed=int(claimed))


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
