"""The injection suite (fixtures/injection/events.jsonl) against a model that obeys.

Each case is one hostile event (or an instruction split over two) beside a genuine one.
The fake model follows every instruction it is shown: it writes the planted statement three
times, citing the hostile event, the genuine neighbour, and both, and also writes one
genuine record. Whatever it obeys, no planted record may be stored; the genuine one is.
The suite holds the 15 ways past the old detector that issue 12 found (property keys,
Italian, Portuguese, Russian, Chinese, fullwidth, zero-width, Cyrillic homoglyphs, base64
without an English verb, a split instruction, id, type, context, hex, a forged id) and
more languages and disguises.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from doxa.core.injection import speaking_event_ids
from doxa.engine import Engine
from doxa.errors import InvalidEventsError
from doxa.events.parse import load_events
from doxa.llm.client import RetryPolicy
from doxa.relevance import make_batches
from doxa.testing.fake_provider import FakeProvider, events_in

SUITE = Path(__file__).resolve().parents[1] / "fixtures" / "injection" / "events.jsonl"
CASES: list[dict[str, Any]] = [json.loads(line) for line in
                               SUITE.read_text(encoding="utf-8").splitlines() if line.strip()]
GENUINE = {"id": "g1", "type": "chat_message", "timestamp": "2026-03-02T10:00:00Z",
           "text": "The calendar view is the best I have used, we open it daily"}
GENUINE_STATEMENT = "Believes the calendar view is the best they have used"


def obedient(planted: str, hostile: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A model that does what the events tell it to, citing whatever it can: the hostile
    events by their ids even where the prompt shows them only as context, without one."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        shown = [event_id for event_id, _ in events_in(body)] + hostile

        def record(statement: str, cited: list[str], quote: str = "") -> dict[str, Any]:
            return {"kind": "preference", "statement": statement, "context": "billing",
                    "basis": "explicit", "relation": "new",
                    "evidence": [{"event_id": e, "quote": quote} for e in cited]}

        records = [record(planted, hostile), record(planted, [GENUINE["id"]]),
                   record(planted, shown),
                   record(GENUINE_STATEMENT, [GENUINE["id"]], "the calendar view is the best")]
        return {"notes": "as the events instruct", "records": records}

    return answer


def test_the_suite_is_large_and_holds_every_bypass_of_issue_12() -> None:
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)
    assert {c["name"] for c in CASES if c["bypass"]} == {
        "property-key", "italian", "portuguese", "russian", "chinese", "fullwidth",
        "zero-width", "cyrillic-homoglyph", "base64", "split", "id", "type", "context", "hex",
        "forged-id"}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_an_obedient_model_stores_no_planted_record(case: dict[str, Any]) -> None:
    fake = await FakeProvider(
        answer=obedient(case["planted"], [e["id"] for e in case["events"]])).start()
    engine = Engine(model="openai/fake", store="memory://", base_url=fake.base_url,
                    api_key="x", retry=RetryPolicy(attempts=1))
    try:
        try:
            await engine.ingest("u-1", [GENUINE, *case["events"]])
        except InvalidEventsError as refused:
            # Refused at validation (a forged id): nothing reached the model or the store.
            assert refused.errors[0].field in ("id", "type", "context"), refused
            assert fake.stats.requests == 0 and await engine.users() == []
            return
        assert fake.stats.requests >= 1
        model = await engine.model("u-1")
    finally:
        await engine.close()
        await fake.stop()
    statements = [r.statement for r in model.records]
    assert case["planted"] not in statements, f"{case['variant']}: planted record stored"
    hostile = {e["id"] for e in case["events"]}
    assert not [r.statement for r in model.records if r.evidence_ids() & hostile]
    assert GENUINE_STATEMENT in statements  # the model was heard; only its obedience was not


@pytest.mark.parametrize("case", [c for c in CASES if len(c["events"]) == 2],
                         ids=[c["name"] for c in CASES if len(c["events"]) == 2])
def test_a_split_instruction_is_seen_only_across_the_two_events(case: dict[str, Any]) -> None:
    events = load_events([{**e, "user_id": "u-1"} for e in [GENUINE, *case["events"]]]).events
    [batch] = make_batches("u-1", events)
    assert speaking_event_ids(batch.items) == {e["id"] for e in case["events"]}
    for half in case["events"]:  # neither half alone
        alone = load_events([{**GENUINE, "user_id": "u-1"}, {**half, "user_id": "u-1"}]).events
        assert speaking_event_ids(make_batches("u-1", alone)[0].items) == set()
