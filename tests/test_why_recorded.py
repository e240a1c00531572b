"""The why pass against recorded real-model traffic (tests/cassettes/why_pilot.yaml).

Whatever a real model proposes, what is stored must hold: every link starts from a goal,
points at the relation's kind, and rests on the user's own words quoted verbatim from an
event of the batch; what did not is in `dropped_links` with its reasons. Recorded against
the local Qwen 2.5 1.5B on 2026-12-01, it filed four statements as goals and proposed four
links, each refused (a `because` must point at a motivation, a `constrained_by` at a
constraint, a `blocked_by` at a belief, and [5] did not exist). Recorded again on 2026-12-02
with the leaner prompt, it wrote one record, "Believes that the board is skeptical and needs
to prove ROI", which the quote's own "I have to prove ROI" makes a goal (doxa.llm.kinds), and
the why pass for it proposed no link. `scripts/record-cassettes -k why` records it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doxa.core.links import link_problem
from doxa.eval.fixtures import load_suite
from doxa.llm.schema import normalise

pytestmark = pytest.mark.recorded

CASSETTE = Path(__file__).parent / "cassettes" / "why_pilot.yaml"
CASE = Path(__file__).parents[1] / "fixtures" / "eval" / "why" / "why-ai-pilot-board-roi.json"
RecordedEngine = Any  # the conftest fixture: async context manager factory


async def test_links_a_real_model_proposes_are_stored_only_when_valid(
    recorded_engine: RecordedEngine,
) -> None:
    [case] = load_suite(CASE)
    events = [e for batch in case.batches for e in batch]
    async with recorded_engine("why_pilot", why=True) as engine:
        result = await engine.ingest(case.user_id, events)
        model = await engine.model(case.user_id)
    texts = {e.id: e.text or "" for e in events}
    assert result.why_calls >= 1 and result.llm_calls >= 2
    for goal in model.active():
        for link in goal.active_links():
            assert link_problem(goal, link.relation, model.find(link.target_id)) is None
            for ev in link.evidence:
                assert ev.quote and normalise(ev.quote) in normalise(texts[ev.event_id])
    for dropped in result.dropped_links:
        assert dropped.reasons
