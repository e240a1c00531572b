"""The Python API as a new user meets it (issue 13): errors that say what to do."""

from __future__ import annotations

import gc
import warnings

import pytest

from doxa.engine import Engine
from doxa.errors import InvalidEventError, InvalidEventsError

NO_ZONE = {"id": "e1", "type": "", "timestamp": "2026-03-01T10:00:00", "text": "hi"}


# -- 7. every problem of an event is reported ------------------------------------------------


def test_every_problem_of_an_event_is_named() -> None:
    engine = Engine(store="memory://")
    with pytest.raises(InvalidEventsError) as caught:
        engine.ingest_sync("u1", [NO_ZONE])
    [error] = caught.value.errors
    assert [field for field, _ in error.problems] == ["type", "timestamp"]
    assert "field 'type'" in str(caught.value) and "time zone" in str(caught.value)
    engine.close_sync()


@pytest.mark.parametrize("events", ["notalist", {"id": "e1"}, b"[]"])
def test_events_that_are_not_a_list_are_refused_as_such(events: object) -> None:
    engine = Engine(store="memory://")
    with pytest.raises(InvalidEventError, match="events must be a list"):
        engine.ingest_sync("u1", events)  # type: ignore[arg-type]
    engine.close_sync()


def test_a_missing_user_id_suggests_user() -> None:
    from doxa.events.parse import load_events

    with pytest.raises(InvalidEventsError, match="--user"):
        load_events([{"id": "e1", "type": "chat", "timestamp": "2026-03-01T10:00:00Z"}])


def test_the_server_names_every_problem_too() -> None:
    pytest.importorskip("fastapi")
    from doxa.server.problems import invalid_events

    error = InvalidEventError("is required", field="type", index=2,
                              problems=[("type", "is required"), ("timestamp", "no zone")])
    fields = [e.field for e in invalid_events(InvalidEventsError([error])).errors or []]
    assert fields == ["events[2].type", "events[2].timestamp"]


# -- 8. sync wrappers inside a running loop say to await ----------------------------------------


async def test_sync_wrappers_in_a_running_loop_say_to_await() -> None:
    from doxa.errors import SyncInEventLoopError

    engine = Engine(store="memory://")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a never-awaited coroutine would be a RuntimeWarning
        with pytest.raises(SyncInEventLoopError, match=r"await engine\.ingest\(\.\.\.\)"):
            engine.ingest_sync("u1", [])
        with pytest.raises(SyncInEventLoopError, match=r"await engine\.model\(\.\.\.\)"):
            engine.model_sync("u1")
        gc.collect()
    await engine.close()


# -- 9. print(model.explain(id)) reads as the chain ---------------------------------------------


def test_an_explanation_prints_as_a_readable_chain() -> None:
    from builders import T0, batch, chat, said
    from doxa.core.merge import merge
    from doxa.model.records import UserModel

    events = [chat("e1", "We need SSO before we can roll this out"),
              chat("e2", "SSO is the blocker for the whole team", day=1)]
    merged = merge(UserModel(user_id="u1"), [said("goal", "Wants SSO before rollout", "e1",
                                                  "e2")], batch(*events), now=T0,
                   prompt_version="p1")
    model = merged.model
    explanation = model.explain(model.records[0].id)
    text = str(explanation)
    assert text.splitlines()[0].startswith(f"{model.records[0].id} goal · active · confidence")
    assert "Wants SSO before rollout" in text and "+ e1" in text and "+ e2" in text
    assert "history:" in text and "created" in text
    assert len(text) < 600 and "ExplainedEvidence(" not in text
    assert explanation.record.id == model.records[0].id  # attributes unchanged for callers


async def test_a_bad_outcome_event_id_is_an_invalid_event_naming_the_field() -> None:
    engine = Engine(store="memory://")
    with pytest.raises(InvalidEventError) as caught:
        await engine.record_outcome("u1", "r1", "engaged", event_id="\x1f")
    assert caught.value.field == "id"
    await engine.close()
