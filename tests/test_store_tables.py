"""The SQL stores share one table definition: only the dialect's types and names differ."""

from __future__ import annotations

import re
import sqlite3

from doxa.store.tables import POSTGRES, SQLITE, USER_TABLES, schema


def _normalised(statements: tuple[str, ...], dialect_words: dict[str, str]) -> list[str]:
    out = []
    for statement in statements:
        for word, neutral in dialect_words.items():
            statement = re.sub(rf"\b{word}\b", neutral, statement)
        out.append(statement)
    return out


def test_both_dialects_create_the_same_tables() -> None:
    sqlite_words = {SQLITE.version_table: "VERSIONS", "REAL": "FLOAT"}
    postgres_words = {POSTGRES.version_table: "VERSIONS", "DOUBLE PRECISION": "FLOAT",
                      "BIGINT": "INTEGER"}
    assert _normalised(schema(SQLITE), sqlite_words) == _normalised(schema(POSTGRES),
                                                                     postgres_words)
    assert "BIGINT" in " ".join(schema(POSTGRES)) and "BIGINT" not in " ".join(schema(SQLITE))


def test_the_sqlite_schema_runs_and_holds_every_user_table() -> None:
    db = sqlite3.connect(":memory:")
    for statement in schema(SQLITE):
        db.execute(statement)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert set(USER_TABLES) | {SQLITE.version_table, "erasures"} == tables
