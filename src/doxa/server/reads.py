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
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from fastapi import Response
from pydantic import BaseModel

from doxa.model.records import UserModel

MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class _Page:
    model: weakref.ref[UserModel]
    body: bytes


class RenderedReads:
    """Rendered JSON bodies by (store user id, what was asked), at most `max_bytes` of them
    (0 keeps nothing)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._pages: OrderedDict[tuple[Hashable, ...], _Page] = OrderedDict()

    def response(self, store_id: str, model: UserModel, asked: tuple[Hashable, ...],
                 render: Callable[[], BaseModel], *, keep: bool = True) -> Response:
        """The page `render()` makes of `model`, rendered once per model object (every
        time when not `keep`: a model faded to a moment is a new object per request)."""
        key = (store_id, *asked)
        held = self._pages.get(key)
        if keep and held is not None and held.model() is model:
            self._pages.move_to_end(key)
            return _json(held.body)
        # Serialised as FastAPI serialises a declared response model (by alias, to JSON
        # bytes in pydantic's core), so a kept page is the same bytes a fresh one would be.
        page = render()
        body = type(page).__pydantic_serializer__.to_json(page, by_alias=True)
        if keep:
            self._keep(key, _Page(weakref.ref(model), body))
        return _json(body)

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


def _json(body: bytes) -> Response:
    return Response(content=body, media_type=MEDIA_TYPE)
