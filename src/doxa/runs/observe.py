"""`doxa observe --file`: many observations, links, traits and outcomes from one JSONL file.

A team starting without an LLM (or loading what its own rules concluded) writes one JSON
object per line, each with a `user_id`, and the line's keys say what it is:

- `kind` + `statement`: an observation (`Engine.observe`'s arguments: evidence,
  confidence, context, source, id, at, relation, related_record_id, dimension, value, status)
- `goal` + `relation` + `target`: a causal link (`Engine.link`); `goal` and `target` are
  record ids or the `id` of an observation (earlier in the file, or loaded before)
- `traits`: the user's segment traits (`Engine.identify`)
- `outcome`: an outcome the user reached (`Engine.record_user_outcome`)

Lines run in file order; every one is idempotent by its id, so a file loaded twice changes
nothing the second time. A bad line stops the load naming its line number and field.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from doxa.engine import Engine
from doxa.errors import InvalidObservationError
from doxa.model.records import Change

LINE_KEYS = {"observation": ("kind", "statement"), "link": ("goal", "relation", "target"),
             "traits": ("traits",), "outcome": ("outcome",)}


@dataclass
class ObserveFileResult:
    """What a file did: lines of each sort, and the changes made to models."""

    lines: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    users: set[str] = field(default_factory=set)


def _sort_of(line: Mapping[str, Any]) -> str:
    for sort, keys in LINE_KEYS.items():
        if all(k in line for k in keys):
            return sort
    raise InvalidObservationError(
        "each line needs kind+statement, goal+relation+target, traits or outcome",
        field="line")


def _at(line: Mapping[str, Any]) -> datetime | None:
    raw = line.get("at")
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError:
        raise InvalidObservationError(f"'{raw}' is not an ISO 8601 time", field="at") from None
    if when.tzinfo is None:
        raise InvalidObservationError("needs a time zone, e.g. 2026-03-02T10:00:00Z", field="at")
    return when


async def observe_file(engine: Engine, path: str | Path) -> ObserveFileResult:
    """Apply every line of the file, in order (see the module doc for the line format)."""
    result = ObserveFileResult()
    try:
        content = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    except OSError as exc:
        raise InvalidObservationError(f"cannot read {path}: {exc.strerror}",
                                      field="file") from None
    for number, text in enumerate(content.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            if not isinstance(line, dict):
                raise InvalidObservationError("must be a JSON object", field="line")
            await _apply(engine, line, result)
        except json.JSONDecodeError as exc:
            raise InvalidObservationError(f"{path}, line {number}: not JSON ({exc.msg})",
                                          field="line") from None
        except InvalidObservationError as exc:
            raise InvalidObservationError(f"{path}, line {number}: {exc.reason}",
                                          field=exc.field) from None
    return result


async def _apply(engine: Engine, line: dict[str, Any], result: ObserveFileResult) -> None:
    user = line.get("user_id")
    if not isinstance(user, str) or not user:
        raise InvalidObservationError("is required", field="user_id")
    sort = _sort_of(line)
    at = _at(line)
    rest = {k: v for k, v in line.items() if k not in ("user_id", "at")}
    changes: list[Change] = []
    if sort == "observation":
        kind, statement = rest.pop("kind"), rest.pop("statement")
        changes = await _checked(lambda: engine.observe(user, kind, statement, at=at, **rest))
    elif sort == "link":
        goal, relation, target = rest.pop("goal"), rest.pop("relation"), rest.pop("target")
        changes = await _checked(lambda: engine.link(user, goal, relation, target, at=at,
                                                     **rest))
    elif sort == "traits":
        await engine.identify(user, line["traits"], at=at, id=line.get("id"))
    else:
        await engine.record_user_outcome(user, str(line["outcome"]), at=at, id=line.get("id"))
    result.lines[sort] = result.lines.get(sort, 0) + 1
    result.changes += changes
    result.users.add(user)


async def _checked(call: Callable[[], Awaitable[list[Change]]]) -> list[Change]:
    """A line's call; an unknown key is named as the field (not a Python TypeError)."""
    try:
        return await call()
    except TypeError as exc:
        word = str(exc).rsplit("'", 2)
        raise InvalidObservationError("is not a key this line takes",
                                      field=word[1] if len(word) == 3 else "line") from None
