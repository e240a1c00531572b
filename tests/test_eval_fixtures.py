"""Fixture files: the case format other suites are written in, and its error messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from doxa.errors import InvalidFixtureError
from doxa.eval.fixtures import load_case, load_suite, parse_case


def case_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "saas-cfo-business-case", "description": "pricing, then a CFO payback question",
        "user_id": "u-cfo-1", "notes": "unknown keys are ignored", "tags": ["saas"],
        "batches": [[
            {"id": "e1", "type": "page_view", "timestamp": "2026-03-02T10:00:00Z",
             "properties": {"path": "/pricing"}},
            {"id": "e4", "type": "chat_message", "timestamp": "2026-03-02T10:31:00Z",
             "text": "I need to show my CFO this pays back within 6 months"},
        ]],
        "expected": [{"kind": "goal", "statement": "Get CFO approval by building a business case",
                      "evidence": ["e4"], "context": "purchase_intent", "dimension": "stage",
                      "value": "evaluation"}],
        "forbidden": [{"kind": "belief", "statement": "The user wants a discount"}],
    }
    data.update(overrides)
    return data


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_a_case_reads_with_defaults_and_the_case_user_on_every_event() -> None:
    case = parse_case(case_data())
    assert case.id == "saas-cfo-business-case" and not case.multi_batch
    assert [e.user_id for e in case.batches[0]] == ["u-cfo-1", "u-cfo-1"]
    (goal,) = case.expected
    assert (goal.status, goal.context, goal.dimension, goal.value) == (
        "active", "purchase_intent", "stage", "evaluation")
    assert case.forbidden[0].kind == "belief"


def test_a_suite_is_every_json_file_under_a_folder(tmp_path: Path) -> None:
    write(tmp_path / "b.json", case_data(id="b"))
    write(tmp_path / "sub" / "a.json", case_data(id="a"))
    (tmp_path / "README.md").write_text("not a case")
    assert [c.id for c in load_suite(tmp_path)] == ["b", "a"]  # by path: b.json < sub/a.json
    assert [c.id for c in load_suite(tmp_path / "b.json")] == ["b"]


@pytest.mark.parametrize(("data", "key", "reason"), [
    (case_data(user_id=""), "user_id", "non-empty"),
    (case_data(batches={"e1": {}}), "batches", "list of lists"),
    (case_data(batches=[[{"id": "e1", "type": "x", "timestamp": "2026-03-02T10:00:00"}]]),
     "batches[0][0].timestamp", "no time zone"),
    (case_data(batches=[[]]), "batches", "empty"),
    (case_data(expected=[{"kind": "wish", "statement": "x"}]), "expected[0].kind", "'belief'"),
    (case_data(expected=[{"kind": "goal", "statement": "x", "evidence": ["e9"]}]),
     "expected[0].evidence", "'e9' is in no batch"),
    (case_data(id=None), "id", "string"),
])
def test_invalid_cases_name_the_file_and_the_key(data: dict[str, Any], key: str,
                                                 reason: str, tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", data)
    with pytest.raises(InvalidFixtureError) as info:
        load_case(path)
    assert info.value.key == key and info.value.path == str(path)
    assert reason in str(info.value) and str(path) in str(info.value)


def test_unreadable_suites_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidFixtureError, match="no such suite"):
        load_suite(tmp_path / "missing")
    with pytest.raises(InvalidFixtureError, match=r"no \*\.json case files"):
        load_suite(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InvalidFixtureError, match="not valid JSON"):
        load_suite(tmp_path)


def test_two_cases_with_one_id_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.json", case_data())
    write(tmp_path / "b.json", case_data())
    with pytest.raises(InvalidFixtureError, match=r"also used by .*a\.json") as info:
        load_suite(tmp_path)
    assert info.value.key == "id"
