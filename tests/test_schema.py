"""Model schemas: validated files, schema-shaped extraction and typed answers for delivery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import NOW, batch, chat
from doxa.core.merge import merge
from doxa.errors import SchemaError
from doxa.llm.schema import ValidationContext, extraction_model, split_valid
from doxa.model.records import Record, UserModel
from doxa.model.schema import load_schema
from doxa.resources import data_dir

STARTER = data_dir("schemas") / "b2b_saas.yaml"


def test_the_starter_schema_is_valid_and_declares_extra_kinds() -> None:
    schema = load_schema(STARTER)
    assert schema.dimension("communication_style").values == ("bullets", "narrative")  # type: ignore[union-attr]
    assert {"constraint", "motivation"} <= set(schema.all_kinds)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("dimensions:\n  - name: style\n    description: how they like answers\n    values: []\n",
     4, "at least one value"),
    ("dimensions:\n  - name: style\n    descripton: typo\n", 2, "description: is required"),
    ("dimensions:\n  - name: a_b\n    description: fine one\n  - name: Bad Name\n"
     "    description: x y z\n", 4, "name"),
    ("dimensions:\n  - name: s\n    description: [unclosed\n", 4, "not valid YAML"),
    ("dimensions:\n  - name: pay\n    description: payback rule\n    kinds: [objection]\n",
     1, "undeclared kind"),
    ("version: 1\n", 1, "dimensions: is required"),
])
def test_a_malformed_schema_is_refused_naming_the_line_and_the_problem(
    tmp_path: Path, text: str, line: int, words: str,
) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    with pytest.raises(SchemaError) as exc:
        load_schema(path)
    assert exc.value.line == line and words in str(exc.value)


def test_values_may_be_described_and_the_prompt_and_tool_say_what_each_means(
    tmp_path: Path,
) -> None:
    from doxa.prompts.render import SCHEMA_PROMPT, PromptSet

    schema = load_schema(STARTER)
    stage = schema.dimension("purchase_stage")
    assert stage is not None and stage.values == (
        "evaluating", "business_case", "procurement", "customer")
    assert "ROI" in stage.value_descriptions["business_case"]
    system = PromptSet(data_dir("prompts") / SCHEMA_PROMPT, schema=schema).system
    assert "business_case = justifying the purchase" in system
    tool = json.dumps(extraction_model(schema).model_json_schema())
    assert "shows: justifying the purchase to whoever approves it" in tool
    path = tmp_path / "schema.yaml"
    path.write_text("dimensions:\n  - name: style\n    description: how they like answers\n"
                    "    values:\n      bullets: lists\n      prose: [not, text]\n")
    with pytest.raises(SchemaError, match="description must be text"):
        load_schema(path)


def test_toml_schemas_load_too(tmp_path: Path) -> None:
    path = tmp_path / "schema.toml"
    path.write_text('[[dimensions]]\nname = "style"\ndescription = "answers"\n'
                    'values = ["bullets", "narrative"]\n')
    assert load_schema(path).dimensions[0].closed


NOTHING_ANSWERED: dict[str, dict[str, str]] = {
    "purchase_stage": dict.fromkeys(("evaluating", "business_case", "procurement", "customer"),
                                    ""),
    "decision_maker": dict.fromkeys(("decision_maker", "influencer", "user"), ""),
    "communication_style": dict.fromkeys(("bullets", "narrative"), ""),
    "depth": dict.fromkeys(("beginner", "expert"), "")}


def _proposals(*records: dict[str, object]):  # type: ignore[no-untyped-def]
    model = extraction_model(load_schema(STARTER))
    return model.model_validate({"notes": "", "records": list(records),
                                 "answers": NOTHING_ANSWERED}).records


def record(dimension: str, value: str | None, event: str = "e1", kind: str = "preference",
           statement: str = "Prefers short bullet answers") -> dict[str, object]:
    return {"kind": kind, "statement": statement, "context": "communication",
            "dimension": dimension, "value": value, "basis": "explicit",
            "evidence": [{"event_id": event}]}


def test_a_value_outside_a_closed_set_and_records_outside_the_schema_are_dropped() -> None:
    b = batch(chat("e1", "bullets please"), chat("e2", "I love hiking"))
    ctx = ValidationContext(batch=b, known_record_ids=frozenset(), schema=load_schema(STARTER))
    extraction = extraction_model(ctx.schema).model_validate({"notes": "", "records": [
        record("communication_style", "bullets"), record("communication_style", "expert"),
        record("other", None, "e2", "belief", "Likes hiking")], "answers": NOTHING_ANSWERED})
    kept, dropped = split_valid(extraction, ctx)
    assert [(r.dimension, r.value) for r in kept] == [("communication_style", "bullets")]  # type: ignore[attr-defined]
    assert "choose one of bullets, narrative" in dropped[0].reasons[0]
    assert "outside the schema" in dropped[1].reasons[0]


def test_a_record_under_a_dimension_takes_a_kind_that_dimension_holds() -> None:
    from doxa.llm.schema import VALIDATION

    b = batch(chat("e1", "I need to show my CFO this pays back within 6 months"))
    ctx = ValidationContext(batch=b, known_record_ids=frozenset(), schema=load_schema(STARTER))
    token = VALIDATION.set(ctx)
    try:
        extraction = extraction_model(ctx.schema).model_validate({"notes": "", "records": [
            record("budget_constraints", None, "e1", "goal", "Needs payback within 6 months"),
            record("purchase_stage", "business_case", "e1", "belief", "Is building a case")],
            "answers": NOTHING_ANSWERED})
    finally:
        VALIDATION.reset(token)
    kept, dropped = split_valid(extraction, ctx)
    assert not dropped
    # budget_constraints holds constraint and belief: the goal becomes its first kind.
    assert [r.kind for r in kept] == ["constraint", "belief"]


def _validated(b: Any, body: dict[str, Any]) -> tuple[Any, Any]:
    from doxa.llm.schema import VALIDATION

    ctx = ValidationContext(batch=b, known_record_ids=frozenset(), schema=load_schema(STARTER))
    token = VALIDATION.set(ctx)
    try:
        return extraction_model(ctx.schema).model_validate(body), ctx
    finally:
        VALIDATION.reset(token)


def test_each_value_of_a_closed_dimension_is_asked_for_and_the_latest_event_decides() -> None:
    """Per value, the event that shows it: the value with the latest event becomes a record
    of the dimension's first kind, with that event as evidence; values tied to no event give
    nothing; a dimension the model already filed in records keeps that record."""
    b = batch(chat("e1", "Comparing you with two other tools this week"),
              chat("e2", "I need to show my CFO this pays back within 6 months", day=1),
              chat("e3", "Please keep answers short, bullet points are best", day=1))
    answers = {**NOTHING_ANSWERED,
               "purchase_stage": {**NOTHING_ANSWERED["purchase_stage"],
                                  "evaluating": "e1", "business_case": "e2"},
               "communication_style": {"bullets": "", "narrative": "e3"}}
    extraction, ctx = _validated(b, {"notes": "", "records": [
        record("communication_style", "bullets", "e3")], "answers": answers})
    kept, dropped = split_valid(extraction, ctx)
    assert not dropped
    assert [(r.kind, r.dimension, r.value, [e.event_id for e in r.evidence])
            for r in kept] == [("preference", "communication_style", "bullets", ["e3"]),
                               ("goal", "purchase_stage", "business_case", ["e2"])]
    assert kept[1].statement == "Where the user is in buying the product: business case"
    schema = extraction_model(ctx.schema).model_json_schema()
    assert schema["required"] == ["notes", "records", "answers"]
    stage = schema["$defs"]["Evidence_purchase_stage"]
    assert stage["required"] == ["evaluating", "business_case", "procurement", "customer"]
    assert "ROI, payback" in stage["properties"]["business_case"]["description"]


def test_two_values_on_the_same_latest_event_are_no_answer() -> None:
    b = batch(chat("e1", "Just the gist please, but explain every step in full"))
    answers = {**NOTHING_ANSWERED, "communication_style": {"bullets": "e1", "narrative": "e1"}}
    extraction, ctx = _validated(b, {"notes": "", "records": [], "answers": answers})
    assert split_valid(extraction, ctx) == ([], [])


def test_a_record_filed_without_its_value_takes_the_one_the_answers_give() -> None:
    """Small models file "bullet points are best" under communication_style with a null
    value and tie bullets to the event in answers (writing "unknown" for the others): the
    record gets the value instead of being re-asked and lost."""
    b = batch(chat("e1", "Please keep answers short, bullet points are best"))
    answers = {**NOTHING_ANSWERED, "communication_style": {"bullets": "e1",
                                                           "narrative": "unknown"}}
    extraction, ctx = _validated(b, {"notes": "", "records": [
        record("communication_style", None, "e1")], "answers": answers})
    kept, dropped = split_valid(extraction, ctx)
    assert not dropped and [(r.dimension, r.value) for r in kept] == [  # type: ignore[attr-defined]
        ("communication_style", "bullets")]
    tool = extraction_model(ctx.schema).model_json_schema()
    assert list(tool["properties"]) == ["notes", "answers", "records"]
    # A value outside the set is not papered over by the answers: it is re-asked, then dropped.
    with pytest.raises(ValueError, match="choose one of bullets, narrative"):
        _validated(b, {"notes": "", "records": [record("communication_style", "evaluating", "e1")],
                       "answers": answers})


def test_a_closed_value_on_a_free_text_dimension_becomes_a_record_of_its_own_dimension(
) -> None:
    """business_case written on a budget_constraints record: the budget record keeps its
    statement with no value (free-text dimensions hold none), and purchase_stage =
    business_case is proposed on the same evidence."""
    b = batch(chat("e1", "I need to show my CFO this pays back within 6 months"))
    extraction, ctx = _validated(b, {"notes": "", "records": [
        record("budget_constraints", "business_case", "e1", "belief",
               "Needs payback within 6 months for the CFO")], "answers": NOTHING_ANSWERED})
    kept, dropped = split_valid(extraction, ctx)
    assert not dropped
    assert [(r.dimension, r.value, [e.event_id for e in r.evidence])  # type: ignore[attr-defined]
            for r in kept] == [("budget_constraints", None, ["e1"]),
                               ("purchase_stage", "business_case", ["e1"])]


def test_an_answer_citing_an_event_outside_the_batch_is_reasked_by_its_name() -> None:
    b = batch(chat("e1", "I need to show my CFO this pays back within 6 months"))
    answers = {**NOTHING_ANSWERED, "purchase_stage": {
        **NOTHING_ANSWERED["purchase_stage"], "business_case": "e9"}}
    with pytest.raises(ValueError, match=r"answers\.purchase_stage: event id 'e9' is not"):
        _validated(b, {"notes": "", "records": [], "answers": answers})


def test_typed_answers_with_fallback_and_a_new_closed_value_supersedes_the_old() -> None:
    b1 = batch(chat("e1", "bullets please"), chat("e2", "short answers, bullet points"))
    model = merge(UserModel(user_id="u1"),
                  _proposals(record("communication_style", "bullets", "e1"),
                             record("communication_style", "bullets", "e2")),
                  b1, now=NOW, prompt_version="p").model
    answer = model.value("communication_style")
    assert (answer.value, answer.fallback, answer.evidence) == ("bullets", False, ["e1", "e2"])
    assert model.value("depth", default="beginner").fallback
    assert model.value("communication_style", min_confidence=0.99, default="narrative"
                       ).value == "narrative"
    b2 = batch(chat("e3", "walk me through it in full sentences", day=30),
               chat("e4", "prose please, not bullets", day=30))
    later = merge(model, _proposals(
        record("communication_style", "narrative", "e3", statement="Prefers narrative prose"),
        record("communication_style", "narrative", "e4", statement="Prefers narrative prose")),
        b2, now=NOW, prompt_version="p").model
    assert later.value("communication_style").value == "narrative"
    assert list(later.dimensions()) == ["communication_style"]
    old = next(r for r in later.records if r.value == "bullets")
    assert old.status == "superseded"


def test_only_closed_dimensions_hold_one_value_at_a_time() -> None:
    """Labels (the oracle's proposals) carry free-text values, which extraction never sends."""
    from doxa.core.merge import MergeConfig
    from doxa.eval.oracle import LabelledProposal

    b = batch(chat("e1", "it must sync with NetSuite"), chat("e2", "and push bills to Bill.com"))
    proposals = [LabelledProposal.model_validate(record(d, v, e, "goal", st)) for d, v, e, st in [
        ("integration_needs", "NetSuite", "e1", "Needs a NetSuite sync"),
        ("integration_needs", "Bill.com", "e2", "Needs bills in Bill.com")]]
    free = merge(UserModel(user_id="u1"), proposals, b, now=NOW, prompt_version="p",
                 config=MergeConfig(closed_dimensions=frozenset({"purchase_stage"}))).model
    assert [r.status for r in free.records] == ["active", "active"]
    closed = merge(UserModel(user_id="u1"), proposals, b, now=NOW, prompt_version="p").model
    assert sorted(r.status for r in closed.records) == ["active", "superseded"]


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_value_that_stays_outside_the_closed_set_is_reasked_twice_then_dropped(
    wire: str,
) -> None:
    """The deterministic half of the recorded test: a provider that keeps answering
    communication_style = "evaluating" (another dimension's value, which a grammar-
    constrained server allows) is re-asked twice, then the record is dropped with the reason."""
    from datetime import UTC, datetime

    from doxa.engine import Engine
    from doxa.llm.client import RetryPolicy
    from doxa.llm.extractor import ExtractionSettings
    from doxa.testing.fake_provider import FakeProvider

    def wrong_value(answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "records": [
            {**r, "kind": "preference", "dimension": "communication_style", "value": "evaluating"}
            for r in answer["records"]]}

    fake = await FakeProvider(rewrite=wrong_value).start()
    try:
        base = fake.base_url.removesuffix("/v1") if wire == "anthropic" else fake.base_url
        engine = Engine(model=f"{wire}/fake", store="memory://", base_url=base, api_key="x",
                        schema=load_schema(STARTER), retry=RetryPolicy(attempts=1),
                        settings=ExtractionSettings(reasks=2))
        result = await engine.ingest("u1", [{
            "id": "e1", "type": "chat_message", "timestamp": datetime(2026, 3, 2, tzinfo=UTC),
            "text": "Please keep it short, bullet points are best"}])
    finally:
        await fake.stop()
    assert result.llm_calls == 3 and fake.stats.requests == 3
    assert len(await engine.model("u1")) == 0
    assert "choose one of bullets, narrative" in " ".join(result.dropped[0].reasons)


def test_folding_is_a_pure_step_that_leaves_the_answer_as_the_model_wrote_it() -> None:
    """Validation checks the folded answer (so the re-ask names `answers.<dimension>`), but
    the parsed answer keeps the model's own records; `split_valid` folds it, the same way
    every time."""
    from doxa.llm.schema import SchemaExtraction, fold_answers

    b = batch(chat("e1", "I need to show my CFO this pays back within 6 months"),
              chat("e2", "Please keep answers short, bullet points are best", day=1))
    answers = {**NOTHING_ANSWERED, "communication_style": {"bullets": "e2", "narrative": ""}}
    extraction, ctx = _validated(b, {"notes": "", "records": [
        record("budget_constraints", "business_case", "e1", "belief",
               "Needs payback within 6 months for the CFO"),
        record("communication_style", None, "e2")], "answers": answers})
    assert isinstance(extraction, SchemaExtraction)
    written = extraction.model_dump()
    folded = fold_answers(extraction, b)
    assert [(r.slot(), folded.where(i)) for i, r in enumerate(folded.records)] == [
        (("budget_constraints", None), "records[0]"),
        (("communication_style", "bullets"), "records[1]"),
        (("purchase_stage", "business_case"), "answers.purchase_stage")]
    assert split_valid(extraction, ctx) == split_valid(extraction, ctx)
    assert extraction.model_dump() == written
    assert [r.slot() for r in extraction.records] == [
        ("budget_constraints", "business_case"), ("communication_style", None)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["style", "depth", None]),
                          st.sampled_from([0.2, 0.5, 0.61, 0.9]),
                          st.sampled_from(["active", "superseded"])), max_size=12),
       st.sampled_from(["style", "depth", "tone"]), st.sampled_from([0.0, 0.6]))
def test_value_answers_the_surest_active_holder_as_active_orders_them(
    specs: list[tuple[str | None, float, str]], dimension: str, floor: float,
) -> None:
    """`value` picks its record without sorting the model (it runs at every decision point):
    the same one as the first holder in `active()`'s order, ties broken by id."""
    records = [Record(id=f"r{i}", user_id="u1", kind="preference", statement=f"s{i}",
                      dimension=dim, value=f"v{i}", confidence=conf, status=status,  # type: ignore[arg-type]
                      valid_from=NOW, created_at=NOW, updated_at=NOW)
               for i, (dim, conf, status) in enumerate(specs)]
    model = UserModel(user_id="u1", records=tuple(records))
    holders = [r for r in model.active() if r.dimension == dimension]
    answer = model.value(dimension, min_confidence=floor, default="d")
    assert answer.record_id == (holders[0].id if holders else None)
    assert answer.fallback == (not holders or holders[0].confidence < floor)
