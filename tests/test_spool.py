"""The spool streams a file, validates every line, and hands out one user at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doxa.errors import InvalidEventsError
from doxa.spool import UserSpool


def line(user: str, event_id: str, minute: int, text: str = "hi there") -> str:
    return json.dumps({"id": event_id, "user_id": user, "type": "chat_message",
                       "timestamp": f"2026-03-02T10:{minute:02d}:00Z", "text": text})


def test_interleaved_users_come_out_grouped(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(line(u, f"e{i}", i) for i, u in enumerate("abcabcab")) + "\n")
    with UserSpool.from_file(path) as spool:
        assert spool.user_count() == 3 and spool.events == 8
        grouped = {u: [e.id for e in evs] for u, evs in spool.users()}
    assert grouped == {"a": ["e0", "e3", "e6"], "b": ["e1", "e4", "e7"], "c": ["e2", "e5"]}


def test_an_invalid_line_refuses_the_file_whole_unless_skipped(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([line("a", "e1", 1), "{broken", line("a", "e2", 2)]) + "\n")
    with pytest.raises(InvalidEventsError) as exc:
        UserSpool.from_file(path)
    assert exc.value.errors[0].line == 2
    with UserSpool.from_file(path, skip_invalid=True) as spool:
        assert spool.invalid == 1 and [len(evs) for _, evs in spool.users()] == [2]


def test_a_reused_id_with_other_content_is_an_error_and_an_exact_repeat_is_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([line("a", "e1", 1), line("a", "e1", 1),
                               line("a", "e1", 1, "different")]) + "\n")
    with pytest.raises(InvalidEventsError, match="used twice"):
        UserSpool.from_file(path)


def test_only_user_filters(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([line("a", "e1", 1), line("b", "e2", 2)]) + "\n")
    with UserSpool.from_file(path, only_user="b") as spool:
        assert [u for u, _ in spool.users()] == ["b"]
