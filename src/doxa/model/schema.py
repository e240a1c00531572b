"""A model schema: the few dimensions worth knowing about each user, declared by the team.

Without one, doxa writes down whatever the events show. With one, extraction is asked only
for the listed dimensions (closed ones from a fixed set of values), records outside them
are dropped (or kept under `other` when the schema says so), and delivery code reads typed
answers: `model.value("communication_style")` → bullets, 0.82.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from doxa.errors import SchemaError
from doxa.model.records import EXTRACTED_KINDS, KINDS

_NAME = r"^[a-z][a-z0-9_]{1,39}$"
OTHER = "other"


class Dimension(BaseModel):
    """One thing worth knowing about every user; `values` closes it to a fixed set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=3)
    kinds: tuple[str, ...] = EXTRACTED_KINDS
    values: tuple[str, ...] | None = None
    value_descriptions: dict[str, str] = Field(default_factory=dict)
    """What each value means, when the file gives `values` as a mapping; the prompt shows
    it, since a bare value name ("business_case") rarely tells a model which events show it."""

    @model_validator(mode="before")
    @classmethod
    def _values_as_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("values"), dict):
            described = data["values"]
            if not all(isinstance(v, str) for v in described.values()):
                raise ValueError("each value's description must be text")
            return {**data, "values": tuple(described),
                    "value_descriptions": {k: v for k, v in described.items() if v.strip()}}
        return data

    @model_validator(mode="after")
    def _described_values_exist(self) -> Dimension:
        unknown = [v for v in self.value_descriptions if v not in (self.values or ())]
        if unknown:
            raise ValueError(f"descriptions for values not listed: {', '.join(unknown)}")
        return self

    @property
    def value_listing(self) -> str:
        """The values, each with its meaning when the schema gives one."""
        if not self.value_descriptions:
            return ", ".join(self.values or ())
        return "; ".join(f"{v} = {self.value_descriptions[v]}" if v in self.value_descriptions
                         else v for v in self.values or ())

    @field_validator("values")
    @classmethod
    def _distinct_values(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if values is not None:
            if not values:
                raise ValueError("a closed dimension needs at least one value")
            if len(set(values)) != len(values):
                raise ValueError("values must be distinct")
        return values

    @property
    def closed(self) -> bool:
        return self.values is not None


class ModelSchema(BaseModel):
    """The dimensions, any kinds beyond belief/goal/preference, and what to do with the rest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    kinds: dict[str, str] = Field(default_factory=dict)
    """Extra record kinds with a description each, e.g. constraint, motivation."""
    dimensions: tuple[Dimension, ...] = Field(min_length=1)
    other: Literal["drop", "keep"] = "drop"

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, kinds: dict[str, str]) -> dict[str, str]:
        for name in kinds:
            if not re.match(_NAME, name):
                raise ValueError(f"kind '{name}' must be a lowercase snake_case name")
        return kinds

    @model_validator(mode="after")
    def _consistent(self) -> ModelSchema:
        names = [d.name for d in self.dimensions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"dimension names must be unique: {', '.join(duplicates)}")
        if OTHER in names:
            raise ValueError("'other' is reserved; set `other: keep` instead")
        known = set(self.all_kinds)
        for d in self.dimensions:
            unknown = [k for k in d.kinds if k not in known]
            if unknown:
                raise ValueError(f"dimension '{d.name}' uses undeclared kind(s) "
                                 f"{', '.join(unknown)}; declare them under `kinds:`")
        return self

    @property
    def all_kinds(self) -> tuple[str, ...]:
        """The kinds this schema extracts: belief, goal and preference, the kinds it
        declares, then the other built-in kinds (motivation, constraint) its dimensions use
        without declaring them (in that order, so a schema's tool schema, and so its
        prompt version, does not change when a kind becomes built in)."""
        declared = (*EXTRACTED_KINDS, *self.kinds)
        used = {k for d in self.dimensions for k in d.kinds}
        return (*declared, *(k for k in KINDS if k in used and k not in declared))

    def dimension(self, name: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.name == name), None)


def load_schema(path: str | Path) -> ModelSchema:
    """Read and validate a YAML or TOML schema; `SchemaError` names the line and problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(str(p), f"cannot read: {exc.strerror}") from None
    if p.suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = re.search(r"line (\d+)", str(exc))
            raise SchemaError(str(p), str(exc), int(line.group(1)) if line else None) from None
        return _validate(data, str(p), lambda loc: _toml_line(text, loc))
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SchemaError(str(p), f"not valid YAML: {getattr(exc, 'problem', exc)}",
                          mark.line + 1 if mark else None) from None
    return _validate(data, str(p), lambda loc: _yaml_line(node, loc))


def _validate(data: Any, path: str, line_of: Any) -> ModelSchema:
    if not isinstance(data, dict):
        raise SchemaError(path, "the schema must be a mapping with a `dimensions` list", 1)
    try:
        return ModelSchema.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[int | None, str]] = []
        for err in exc.errors()[:5]:
            loc = tuple(err["loc"])
            where = ".".join(str(x) for x in loc) or "schema"
            message = "is required" if err["type"] == "missing" else err["msg"]
            if err["type"] == "extra_forbidden":
                message = "is not a schema key (typo?)"
            problems.append((line_of(loc), f"{where}: {message}"))
        first_line = problems[0][0]
        text = "; ".join(f"{m} (line {n})" if n and n != first_line else m for n, m in problems)
        raise SchemaError(path, text, first_line) from None


def _yaml_line(node: Any, loc: tuple[Any, ...]) -> int | None:
    best = node
    for part in loc:
        if isinstance(best, yaml.MappingNode):
            found = next((v for k, v in best.value if k.value == part), None)
            if found is None:
                break
            best = found
        elif isinstance(best, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(best.value):
            best = best.value[part]
        else:
            break
    return best.start_mark.line + 1 if best is not None else None


def _toml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    keys = [str(p) for p in loc if isinstance(p, str)]
    for key in reversed(keys):
        for n, line in enumerate(text.splitlines(), start=1):
            if re.match(rf"\s*{re.escape(key)}\s*=", line):
                return n
    return None


def starter_schema_text() -> str:
    """The commented starter schema for a B2B SaaS product (`doxa schema init`)."""
    from doxa.resources import data_dir

    return (data_dir("schemas") / "b2b_saas.yaml").read_text(encoding="utf-8")
