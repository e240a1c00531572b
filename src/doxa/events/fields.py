"""What each event field may hold: the one set of rules the Event model, the HTTP schemas,
the CLI and the server's tenancy all check against.

Every field of an event reaches the LLM's prompt, so what an id, a type or a context may
contain is restricted to characters that cannot open or close markup, and every string is
bounded and free of control characters. Properties are walked without recursion, so a
hostile nesting depth is refused here, before anything recursive (redaction, JSON
encoding, the store) or any LLM call sees it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

MAX_TEXT_CHARS = 20_000
"""Event text longer than this is refused: it is almost always a paste or a log dump."""
MAX_PROPERTY_DEPTH = 16
"""Levels of objects and arrays inside `properties` (a flat object is depth 1)."""
MAX_PROPERTY_ITEMS = 1_000
"""Keys and array items inside `properties`, counted over every level."""
MAX_PROPERTY_KEY_CHARS = 200
MAX_PROPERTY_STRING_CHARS = MAX_TEXT_CHARS

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
"""User ids: 1-128 characters, ASCII letters, digits and `. _ : @ + -`, never `/` (the
server namespaces its tenants' users as `<tenant>/<user id>`)."""
EVENT_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:@+#=~/-]{0,199}$"
"""Event ids: 1-200 characters, ASCII letters, digits and `. _ : @ + # = ~ / -` (UUIDs,
`evt_123`, `stripe:evt/1`, base64 ids), never a quote, an angle bracket or white space."""
LABEL_PATTERN = r"^[\w$](?:[\w .:/$@#+-]{0,98}[\w.:/$@#+-])?$"
"""Types and contexts: 1-100 characters, letters and digits of any script, `_`, inner
single spaces and `. : / $ @ # + -` (`chat_message`, `Order Completed`, `$pageview`)."""

_USER_ID = re.compile(USER_ID_PATTERN)
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
_LABEL = re.compile(LABEL_PATTERN)
_DOUBLE_SPACE = re.compile(r"\s\s")
# C0 controls but tab, newline and carriage return; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

_TENANT_SCOPE: ContextVar[bool] = ContextVar("doxa_tenant_scope", default=False)


@contextmanager
def tenant_scoped_user_ids() -> Iterator[None]:
    """Inside this block (the HTTP server's calls into the engine, and only those), a user id
    may also be the server's own `<tenant>/<user id>` form, each part a valid id. Outside it,
    a `/` in a user id is refused, so no CLI or library caller can write into a tenant's
    namespace."""
    token = _TENANT_SCOPE.set(True)
    try:
        yield
    finally:
        _TENANT_SCOPE.reset(token)


def check_user_id(value: str) -> str:
    """A user id as a caller gives it (CLI, Python API, HTTP), or a ValueError saying what a
    user id may hold. The server's `<tenant>/<user id>` form passes only inside
    `tenant_scoped_user_ids()`."""
    if _USER_ID.fullmatch(value) or (_TENANT_SCOPE.get() and _namespaced(value)):
        return value
    _refuse_blank(value)
    raise ValueError(f"{_shown(value)} is not a valid user id: 1-128 characters, ASCII letters, "
                     "digits and . _ : @ + - (starting with a letter or digit), no '/'")


def _namespaced(value: str) -> bool:
    tenant, sep, user = value.partition("/")
    return bool(sep) and bool(_USER_ID.fullmatch(tenant)) and bool(_USER_ID.fullmatch(user))


def check_event_id(value: str) -> str:
    if _EVENT_ID.fullmatch(value):
        return value
    _refuse_blank(value)
    raise ValueError(f"{_shown(value)} is not a valid event id: 1-200 characters, ASCII letters, "
                     "digits and . _ : @ + # = ~ / - (starting with a letter, digit or _)")


def check_label(value: str) -> str:
    """A type or a context tag."""
    if _LABEL.fullmatch(value) and not _DOUBLE_SPACE.search(value):
        return value
    _refuse_blank(value)
    raise ValueError(f"{_shown(value)} is not valid here: 1-100 characters, letters, digits, _, "
                     "single inner spaces and . : / $ @ # + - (no quotes, brackets or controls)")


def check_text(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"is {len(value)} characters; the limit is {MAX_TEXT_CHARS}")
    _refuse_controls(value)
    return value


def check_properties(value: Any) -> Any:
    """Refuse properties nested deeper than MAX_PROPERTY_DEPTH, holding more than
    MAX_PROPERTY_ITEMS keys and items, or with an over-long or control-bearing string.

    Iterative on purpose: a recursive walk is what a hostile depth would crash."""
    if not isinstance(value, Mapping):
        return value  # the model's own type check names it
    stack: list[tuple[Any, str, int]] = [(value, "properties", 1)]
    items = 0
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_PROPERTY_DEPTH:
            raise ValueError(f"nesting is deeper than {MAX_PROPERTY_DEPTH} levels at {path}")
        children: list[tuple[str, Any]]
        if isinstance(node, Mapping):
            children = []
            for key, child in node.items():
                if not isinstance(key, str):
                    raise ValueError(f"key {key!r} in {path} is not a string")
                if len(key) > MAX_PROPERTY_KEY_CHARS:
                    raise ValueError(f"a key in {path} is {len(key)} characters; the limit is "
                                     f"{MAX_PROPERTY_KEY_CHARS}")
                _refuse_controls(key, f"key {_shown(key)} in {path}")
                children.append((f"{path}.{key}", child))
        else:
            children = [(f"{path}[{i}]", child) for i, child in enumerate(node)]
        items += len(children)
        if items > MAX_PROPERTY_ITEMS:
            raise ValueError(f"holds more than {MAX_PROPERTY_ITEMS} keys and items")
        for child_path, child in children:
            if isinstance(child, str):
                if len(child) > MAX_PROPERTY_STRING_CHARS:
                    raise ValueError(f"{child_path} is {len(child)} characters; the limit is "
                                     f"{MAX_PROPERTY_STRING_CHARS}")
                _refuse_controls(child, child_path)
            elif isinstance(child, Mapping | list | tuple):
                stack.append((child, child_path, depth + 1))
    return value


def _refuse_controls(value: str, where: str = "") -> None:
    found = _CONTROL.search(value)
    if found is not None:
        what = "a NUL byte" if found.group() == "\x00" else (
            f"the control character U+{ord(found.group()):04X}")
        raise ValueError(f"{where + ' ' if where else ''}holds {what}".strip())


def _refuse_blank(value: str) -> None:
    """The two mistakes worth their own words: nothing at all, and stray white space."""
    if not value:
        raise ValueError("must have at least 1 character")
    if value != value.strip():
        raise ValueError("must not start or end with white space")


def _shown(value: str) -> str:
    """The offending value, quoted and cut, with control characters made visible."""
    return repr(value[:60] + ("..." if len(value) > 60 else ""))


EventId = Annotated[str, AfterValidator(check_event_id),
                    Field(json_schema_extra={"pattern": EVENT_ID_PATTERN})]
Label = Annotated[str, AfterValidator(check_label),
                  Field(description="1-100 characters: letters and digits of any script, _, "
                        "single inner spaces and . : / $ @ # + -",
                        json_schema_extra={"pattern": LABEL_PATTERN})]
EventText = Annotated[str | None, AfterValidator(check_text)]
Properties = Annotated[dict[str, Any], BeforeValidator(check_properties),
                       Field(description=f"any JSON object, at most {MAX_PROPERTY_DEPTH} levels "
                             f"deep with at most {MAX_PROPERTY_ITEMS} keys and items; strings "
                             f"at most {MAX_PROPERTY_STRING_CHARS} characters, no control "
                             "characters")]
