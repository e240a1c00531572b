"""Eval fixtures: one JSON file per labelled case; a suite is a folder of them.

A case names a user, the batches of events ingested in order (one ingest each), the
records the model should hold after the last batch (`expected`) and records that must not
be active (`forbidden`). Unknown keys are ignored, so cases may carry notes and tags.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from doxa.errors import DoxaError, InvalidEventError, InvalidFixtureError
from doxa.events.parse import Event, parse_event
from doxa.model.records import LINK_TARGET_KIND, Relation, Status

# The built-in kinds and the two a model schema most often adds (doxa schema init).
Kind = Literal["belief", "goal", "preference", "constraint", "motivation"]

log = logging.getLogger(__name__)


class ExpectedRecord(BaseModel):
    """A record the final model should hold; `evidence` lists the event ids that show it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Kind
    statement: str = Field(min_length=1)
    evidence: tuple[str, ...] = ()
    status: Status = "active"
    context: str | None = None
    dimension: str | None = None
    value: Any = None


class ForbiddenRecord(BaseModel):
    """A record no active predicted record may match; no `kind` means any kind."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Kind | None = None
    statement: str = Field(min_length=1)


class ExpectedLink(BaseModel):
    """A causal link the final model should hold, between two expected records (by index):
    `from` is a goal; `to` is what it is `because` of (a motivation), `constrained_by` (a
    constraint), `blocked_by` (a belief) or pursued `in_order_to` (another goal)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    source: int = Field(alias="from", ge=0)
    relation: Relation
    target: int = Field(alias="to", ge=0)
    evidence: tuple[str, ...] = ()


class Case(BaseModel):
    """One labelled scenario: events in batches, what the model should and must not hold."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    description: str = ""
    user_id: str = Field(min_length=1)
    batches: tuple[tuple[Event, ...], ...] = Field(min_length=1)
    expected: tuple[ExpectedRecord, ...] = ()
    forbidden: tuple[ForbiddenRecord, ...] = ()
    links: tuple[ExpectedLink, ...] | None = None
    """The causal links the final model should hold; None: the case does not label links
    (its predicted links are not scored), [] : it should hold none (no why is shown)."""
    path: str = ""

    @field_validator("batches")
    @classmethod
    def _no_empty_batch(cls, value: tuple[tuple[Event, ...], ...]) -> tuple[tuple[Event, ...], ...]:
        if any(not batch for batch in value):
            raise ValueError("a batch is empty; every batch needs at least one event")
        return value

    @property
    def multi_batch(self) -> bool:
        return len(self.batches) > 1

    def event_ids(self) -> set[str]:
        return {event.id for batch in self.batches for event in batch}


def _parse_batches(raw: object, user_id: str, path: Path) -> list[list[Event]]:
    """Events get the case's user id; an invalid one is named by batch and index."""
    if not isinstance(raw, list) or not all(isinstance(b, list) for b in raw):
        raise InvalidFixtureError(path, "must be a list of lists of events", key="batches")
    batches: list[list[Event]] = []
    for b, batch in enumerate(raw):
        events: list[Event] = []
        for i, item in enumerate(batch):
            try:
                events.append(parse_event(item, default_user_id=user_id))
            except InvalidEventError as exc:
                key = f"batches[{b}][{i}]" + (f".{exc.field}" if exc.field else "")
                raise InvalidFixtureError(path, exc.reason, key=key) from None
        batches.append(events)
    return batches


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _check_links(case: Case, path: Path) -> None:
    """A link must join a labelled goal to a labelled record of the relation's kind."""
    for n, link in enumerate(case.links or ()):
        key = f"links[{n}]"
        if link.source >= len(case.expected) or link.target >= len(case.expected):
            raise InvalidFixtureError(path, "from/to must index records in `expected`", key=key)
        source, target = case.expected[link.source], case.expected[link.target]
        wanted = LINK_TARGET_KIND[link.relation]
        if source.kind != "goal" or target.kind != wanted or link.source == link.target:
            raise InvalidFixtureError(
                path, f"{link.relation} joins a goal to a {wanted}; this joins a "
                f"{source.kind} to a {target.kind}", key=key)
        for eid in link.evidence:
            if eid not in case.event_ids():
                raise InvalidFixtureError(path, f"event id '{eid}' is in no batch of this case",
                                          key=f"{key}.evidence")


def _check_evidence(case: Case, path: Path) -> None:
    """An expected evidence id that no batch holds is a typo in the fixture, not a miss."""
    known = case.event_ids()
    for n, record in enumerate(case.expected):
        for eid in record.evidence:
            if eid not in known:
                raise InvalidFixtureError(
                    path, f"event id '{eid}' is in no batch of this case",
                    key=f"expected[{n}].evidence",
                )


def parse_case(data: object, path: str | Path = "<case>") -> Case:
    """Validate one case's JSON data; `InvalidFixtureError` names the file and the key."""
    p = Path(path)
    if not isinstance(data, dict):
        raise InvalidFixtureError(p, f"expected a JSON object, got {type(data).__name__}")
    user_id = data.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidFixtureError(p, "is required and must be a non-empty string", key="user_id")
    batches = _parse_batches(data.get("batches"), user_id, p)
    try:
        case = Case.model_validate({**data, "batches": batches, "path": str(path)})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidFixtureError(p, err["msg"], key=_key(err["loc"]) or None) from None
    _check_evidence(case, p)
    _check_links(case, p)
    return case


def read_json(path: Path, error: Callable[[Path, str], DoxaError]) -> object:
    """A JSON file's content; `error(path, reason)` is raised if it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(path, "file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(path, f"not valid JSON ({exc})") from None


def load_case(path: str | Path) -> Case:
    """Read and validate one case file."""
    p = Path(path)
    return parse_case(read_json(p, InvalidFixtureError), p)


def load_suite(path: str | Path) -> list[Case]:
    """Every `*.json` case under a folder (subfolders too), by path; or one case file."""
    root = Path(path)
    if root.is_file():
        return [load_case(root)]
    if not root.is_dir():
        raise InvalidFixtureError(root, "no such suite folder or case file")
    files = sorted(p for p in root.rglob("*.json") if p.is_file())
    if not files:
        raise InvalidFixtureError(root, "holds no *.json case files")
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for file in files:
        case = load_case(file)
        if case.id in seen:
            raise InvalidFixtureError(
                file, f"case id '{case.id}' is also used by {seen[case.id]}", key="id"
            )
        seen[case.id] = str(file)
        cases.append(case)
    log.debug("loaded %d cases from %s", len(cases), root)
    return cases


def select_cases(cases: Sequence[Case], patterns: Sequence[str] = (), every: int = 1
                 ) -> list[Case]:
    """The cases whose id matches one of `patterns` (shell globs; all when none), then every
    `every`-th of those in suite order, starting with the first: a fixed sample for
    comparing prompts in minutes, named the same way on every run."""
    if every < 1:
        raise ValueError("every must be 1 or more")
    chosen = [c for c in cases
              if not patterns or any(fnmatchcase(c.id, p) for p in patterns)]
    return chosen[::every]
