"""The JSON documents of an events file, whatever the format inside them.

Collection tools export in three shapes: one JSON value a line (JSONL: Segment and
RudderStack archives, PostHog batch exports, OpenAI fine-tuning files), one JSON array
(an API's list response), or one JSON document (a Segment `{"batch": [...]}` body, a
pretty-printed chat transcript). Each document is handed on with where it was (line or
index), so a reader's error can say where to look; a line that is not JSON is an
`InvalidEventError` in the stream, not an exception, so one bad line does not hide the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doxa.errors import InvalidEventError
from doxa.events.parse import iter_jsonl

__all__ = ["Document", "read_documents"]

@dataclass(frozen=True)
class Document:
    """One top-level JSON value of a file and where it was: `line` (1-based) for JSONL,
    `index` (0-based) for an array file, neither for a file that is one document."""

    value: Any
    line: int | None = None
    index: int | None = None


def read_documents(path: str | Path) -> Iterator[Document | InvalidEventError]:
    """Every top-level JSON value of the file, in order; unreadable parts as errors."""
    p = Path(path)
    if not p.is_file():
        raise InvalidEventError("file does not exist", source=str(p))
    if _is_one_document(p):
        yield from _whole(p)
        return
    yield from _lines(p)


def _is_one_document(path: Path) -> bool:
    """A file whose first non-blank line is not a JSON value by itself: a pretty-printed
    object or array. (A line is read whole, however long: PostHog events with all their
    `$` properties easily pass a few kilobytes.)"""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                    return True
                return False
    return False


def _whole(path: Path) -> Iterator[Document | InvalidEventError]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        yield InvalidEventError(f"not UTF-8 ({exc.reason})", source=str(path))
        return
    except json.JSONDecodeError as exc:
        yield InvalidEventError(f"not valid JSON ({exc.msg} at line {exc.lineno}, column "
                                f"{exc.colno})", source=str(path))
        return
    except RecursionError:
        yield InvalidEventError("nested too deeply to read", source=str(path))
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield Document(item, index=i)
        return
    yield Document(value)


def _lines(path: Path) -> Iterator[Document | InvalidEventError]:
    for lineno, value in iter_jsonl(path):
        yield value if isinstance(value, InvalidEventError) else Document(value, line=lineno)
