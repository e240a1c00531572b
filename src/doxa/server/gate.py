"""The ASGI gate in front of the routes: API key, then media type, then body size.

It answers before any body is read: a request without a valid key gets 401 whatever it
sends (two `Authorization` headers get 400: which one would count is anyone's guess), a
declared `Content-Length` over the limit gets 413 at once, and a body streamed without one
is counted chunk by chunk and refused as soon as it passes the limit. A body that is not
UTF-8 (which JSON must be) gets 400 `malformed-body`. Only a body within the limit reaches
FastAPI, which then parses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from doxa.server.auth import KeyRing
from doxa.server.problems import MEDIA_TYPE, problem_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIXES = ("/v1/users", "/v1/collect")
PRINCIPAL = "doxa_principal"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_WWW_AUTH = (b"www-authenticate", b'Bearer realm="doxa"')


class Gate:
    """Authenticate, check the media type and bound the body before the app sees a request."""

    def __init__(self, app: ASGIApp, *, keys: KeyRing, max_body_bytes: int) -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        raw_headers = scope.get("headers", [])
        headers = {k.lower(): v for k, v in raw_headers}
        if path.startswith(PROTECTED_PREFIXES):
            if sum(k.lower() == b"authorization" for k, _ in raw_headers) > 1:
                await _answer(send, 400, "malformed-request",
                              "send exactly one Authorization header", path)
                return
            refusal = self._authenticate(scope, headers.get(b"authorization"))
            if refusal is not None:
                await _answer(send, 401, "unauthorized", refusal, path, [_WWW_AUTH])
                return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        media = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media != b"application/json" and not media.endswith(b"+json"):
            await _answer(send, 415, "unsupported-media-type",
                          "send the body as JSON with Content-Type: application/json", path)
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit()
                                     or int(declared) > self.max_body_bytes):
            await self._too_large(send, path)
            return
        body = await self._read_bounded(receive)
        if body is None:
            await self._too_large(send, path)
            return
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            await _answer(send, 400, "malformed-body",
                          f"the body is not valid UTF-8 (byte {exc.start})", path)
            return
        await self.app(scope, _replay(body, receive), send)

    def _authenticate(self, scope: Scope, header: bytes | None) -> str | None:
        """None when the key is good (its principal is put in the request state)."""
        if not header:
            return "no API key: send it as 'Authorization: Bearer <key>'"
        scheme, _, key = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return "the Authorization header must be 'Bearer <key>'"
        principal = self.keys.authenticate(key.strip())
        if principal is None:
            return "the API key is not valid"
        scope.setdefault("state", {})[PRINCIPAL] = principal
        return None

    async def _read_bounded(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send, path: str) -> None:
        await _answer(send, 413, "payload-too-large",
                      f"the body is larger than {self.max_body_bytes} bytes; send fewer events "
                      "per request", path, [(b"connection", b"close")])


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, slug: str, detail: str, path: str,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = problem_bytes(status, slug, detail, instance=path)
    headers = [(b"content-type", MEDIA_TYPE.encode()),
               (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
