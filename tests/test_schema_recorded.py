"""Schema-shaped extraction against recorded real-model traffic (tests/cassettes/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from doxa.events import load_file
from doxa.resources import data_dir
from doxa.schema import ModelSchema, load_schema

pytestmark = pytest.mark.recorded
DEMO = data_dir("demo") / "events.jsonl"
STARTER = data_dir("schemas") / "b2b_saas.yaml"
PROMPTS = Path(__file__).parent / "prompts"


async def test_starter_schema_on_the_demo_gives_typed_values_with_evidence(
    recorded_engine: Any,
) -> None:
    schema = load_schema(STARTER)
    async with recorded_engine("schema_demo", schema=schema) as engine:
        result = await engine.ingest("demo-user", load_file(DEMO).events)
        model = await engine.model("demo-user")
    style = model.value("communication_style", min_confidence=0.0)
    assert style.value == "bullets" and style.evidence
    stage = model.value("purchase_stage", min_confidence=0.0)
    assert stage.value in schema.dimension("purchase_stage").values  # type: ignore[union-attr, operator]
    assert stage.evidence
    for record in model.records:  # nothing outside the schema is stored
        dimension = schema.dimension(record.dimension or "")
        assert dimension is not None and record.kind in dimension.kinds
        assert dimension.values is None or record.value in dimension.values
    assert all("outside the schema" in " ".join(d.reasons) or d.reasons
               for d in result.dropped)


async def test_a_value_outside_the_closed_set_is_reasked_then_dropped(
    recorded_engine: Any,
) -> None:
    only_style = ModelSchema.model_validate({"dimensions": [{
        "name": "communication_style", "description": "how the user wants answers written",
        "kinds": ["preference"], "values": ["bullets", "narrative"]}]})
    async with recorded_engine("schema_bad_values", schema=only_style,
                               prompt_dir=PROMPTS / "bad_values") as engine:
        result = await engine.ingest("demo-user", load_file(DEMO).events)
        model = await engine.model("demo-user")
    assert result.llm_calls == 3  # the answer and two re-asks
    assert result.dropped
    assert any("choose one of bullets, narrative" in " ".join(d.reasons) for d in result.dropped)
    assert all(r.value in ("bullets", "narrative") for r in model.records)
