"""Rendered reads kept at the server's edge, each valid while the store hands back its model.

A decision point reads the same user's model again and again between two commits, and
rendering a page of a 600-record model (the records, readiness, the JSON) costs
milliseconds each time. So the server keeps the bytes of each page it rendered with a weak
reference to the model object they came from, and serves them again only when the store
returns that very object. The stores check the user's current commit on every load and
return the same frozen object only while nothing was committed (`doxa.store.snapshots`;
the memory store holds its one object), so "the same object" is exactly "no commit since":
this cache can never be staler than the store's own read, in this process or across
processes sharing a database. A store that builds a new object per load makes every read
a miss, never a wrong answer.

Reads faded to a moment (`at`) are built anew each time and not kept. The cache is bounded
by the bytes it holds, least recently used out first; it lives in the app's state, not in
module state.

Every page carries an `ETag`, a hash of its bytes, and `Cache-Control: private, no-cache`
(a client or proxy may keep it but must ask again before each use). A request whose
`If-None-Match` names the current tag gets `304 Not Modified` and no body, so a reader that
polls a model between commits moves a few hundred bytes instead of a page of records. The
tag is the body's hash rather than the model's version: a version number comes back when a
deleted user is rebuilt, and two queries over one version are different pages, while equal
bytes are the only thing a 304 may vouch for. A page kept here is hashed once, when it is
rendered, so revalidating against it costs no more than serving it.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from fastapi import Response
from pydantic import BaseModel

from doxa.model.records import UserModel

MEDIA_TYPE = "application/json"
CACHE_CONTROL = "private, no-cache"
"""Kept by the caller only with a revalidation (If-None-Match) before each use, never by a
shared cache: the pages are one tenant's data."""


@dataclass(frozen=True)
class _Page:
    model: weakref.ref[UserModel]
    body: bytes
    etag: str


class RenderedReads:
    """Rendered JSON bodies by (store user id, what was asked), at most `max_bytes` of them
    (0 keeps nothing)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._pages: OrderedDict[tuple[Hashable, ...], _Page] = OrderedDict()

    def response(self, store_id: str, model: UserModel, asked: tuple[Hashable, ...],
                 render: Callable[[], BaseModel], *, keep: bool = True,
                 if_none_match: str | None = None) -> Response:
        """The page `render()` makes of `model`, rendered once per model object (every
        time when not `keep`: a model faded to a moment is a new object per request), or
        a bodiless 304 when `if_none_match` names its tag."""
        key = (store_id, *asked)
        held = self._pages.get(key)
        if keep and held is not None and held.model() is model:
            self._pages.move_to_end(key)
            page = held
        else:
            # Serialised as FastAPI serialises a declared response model (by alias, to JSON
            # bytes in pydantic's core), so a kept page is the same bytes a fresh one is.
            rendered = render()
            body = type(rendered).__pydantic_serializer__.to_json(rendered, by_alias=True)
            page = _Page(weakref.ref(model), body, entity_tag(body))
            if keep:
                self._keep(key, page)
        headers = {"ETag": page.etag, "Cache-Control": CACHE_CONTROL}
        if if_none_match is not None and matches(if_none_match, page.etag):
            return Response(status_code=304, headers=headers)
        return Response(content=page.body, media_type=MEDIA_TYPE, headers=headers)

    def _keep(self, key: tuple[Hashable, ...], page: _Page) -> None:
        old = self._pages.pop(key, None)
        if old is not None:
            self.held_bytes -= len(old.body)
        if len(page.body) > self.max_bytes:
            return
        self._pages[key] = page
        self.held_bytes += len(page.body)
        while self.held_bytes > self.max_bytes:
            _, gone = self._pages.popitem(last=False)
            self.held_bytes -= len(gone.body)


def entity_tag(body: bytes) -> str:
    """A strong validator for `body`: its BLAKE2b-128 hash, quoted as RFC 9110 wants."""
    return f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


def matches(if_none_match: str, etag: str) -> bool:
    """Whether an `If-None-Match` value names `etag` (RFC 9110 13.1.2: `*`, or a list
    compared weakly, so a `W/` a proxy may have added does not matter)."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))
