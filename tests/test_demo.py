"""`doxa demo`: the first thing a new user runs, replayed from fixtures/demo/cassette.yaml.

It must show what doxa is for at a glance: one goal, one belief and one preference a reader
would agree with, each resting on the user's own words, and no sentence filed twice under
different kinds. The recording is of a real model (scripts/record-cassettes re-records it),
so this holds the shipped demo to that standard whenever the recording or its events change.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from doxa.cli.main import app
from doxa.events.parse import load_file
from doxa.resources import data_dir


def demo_json() -> dict[str, object]:
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    shown: dict[str, object] = json.loads(result.stdout)
    return shown


def test_the_demo_shows_a_goal_a_belief_and_a_preference_in_the_users_words() -> None:
    shown = demo_json()
    model = shown["model"]
    assert isinstance(model, dict)
    active = [r for r in model["records"] if r["status"] == "active"]
    assert {"goal", "belief", "preference"} <= {r["kind"] for r in active}
    said = {e.id: e.text for e in load_file(data_dir("demo") / "events.jsonl").events
            if e.text}
    in_words = set()
    for record in active:
        assert record["evidence"], record
        for ev in record["evidence"]:
            if ev["event_id"] in said:  # a chat turn: cited by the user's words, verbatim
                assert ev["quote"] and ev["quote"] in said[ev["event_id"]], ev
                in_words.add(record["kind"])
    assert {"goal", "belief", "preference"} <= in_words

def test_no_sentence_of_the_demo_is_filed_under_two_kinds() -> None:
    """The old recording restated one sentence as both a belief and a goal."""
    model = demo_json()["model"]
    assert isinstance(model, dict)
    kinds_by_event: dict[str, set[str]] = {}
    for record in model["records"]:
        if record["status"] != "active":
            continue
        for ev in record["evidence"]:
            if ev.get("quote"):
                kinds_by_event.setdefault(ev["event_id"], set()).add(record["kind"])
    assert all(len(kinds) == 1 for kinds in kinds_by_event.values()), kinds_by_event
