"""Read any SDK's exception (wrapped by instructor or not) as a doxa `ProviderError`.

One place decides what is worth retrying: 408/409/429/5xx, timeouts and dropped
connections are; 400/401/403/404/422 are not, and say what to fix.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

from doxa.errors import ContextLengthError, ProviderAuthError, ProviderError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# OpenAI: "maximum context length", code context_length_exceeded; Anthropic: "prompt is too
# long"; llama.cpp / vLLM servers answer in OpenAI's words or "exceeds the context".
_CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|maximum context|prompt is too long|exceeds? (the )?context", re.I)

_HINTS = {
    400: "the provider rejected the request; check the model name and parameters",
    401: "the API key was refused; set OPENAI_API_KEY / ANTHROPIC_API_KEY to a valid key",
    403: "the API key may not use this model or endpoint; check the key's project/permissions",
    404: "the model or endpoint does not exist; check the model name and the base URL "
         "(base_url= / --base-url)",
    422: "the provider could not process the request; check the model supports tool calling",
}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not s for s in seen):
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _is_transport_failure(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {
        "APITimeoutError", "APIConnectionError", "APIResponseValidationError",
        "TimeoutException", "NetworkError", "RemoteProtocolError", "ConnectError",
        "ReadError", "ConnectionResetError", "TimeoutError",
    })


def provider_error(exc: BaseException) -> ProviderError | None:
    """The provider failure behind `exc`, or None when it was not the provider's."""
    for e in _chain(exc):
        if isinstance(e, ProviderError):
            return e
        status = _status_of(e)
        if status is not None:
            body = str(getattr(e, "message", "") or e)[:300]
            if status in RETRYABLE_STATUS:
                err = ProviderError(f"provider answered {status}: {body}", status=status,
                                    retryable=True)
            elif status in (400, 413) and _CONTEXT_LENGTH.search(body):
                err = ContextLengthError(
                    f"provider answered {status}: the request is longer than the model's "
                    f"context; lower the batch budget (RelevanceConfig.max_tokens) or use "
                    f"a model with a longer context ({body})", status=status, retryable=False)
            else:
                hint = _HINTS.get(status, "the provider refused the request")
                err = ProviderAuthError(f"provider answered {status}: {hint} ({body})",
                                        status=status, retryable=False)
            err.__cause__ = e
            _copy_retry_after(e, err)
            return err
        if _is_transport_failure(e):
            err = ProviderError(f"provider unreachable or answered badly: {type(e).__name__}: "
                                f"{str(e)[:200]}", retryable=True)
            err.__cause__ = e
            return err
    return None


def is_retryable(exc: BaseException) -> bool:
    found = provider_error(exc)
    return found is not None and found.retryable


def _copy_retry_after(source: BaseException, target: ProviderError) -> None:
    response: Any = getattr(source, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        target.retry_after = _parse_retry_after(
            headers.get("retry-after-ms"), headers.get("retry-after")
        )


def _parse_retry_after(ms: str | None, value: str | None) -> float | None:
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait the provider asked for (Retry-After / retry-after-ms), if any."""
    found = provider_error(exc)
    return getattr(found, "retry_after", None) if found is not None else None
