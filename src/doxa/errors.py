"""One exception hierarchy: catch `DoxaError` for everything, or a leaf for exactly what failed."""

from __future__ import annotations

from collections.abc import Sequence


class DoxaError(Exception):
    """Base of every error doxa raises on purpose."""


class InvalidEventError(DoxaError):
    """An event failed validation; `line` is 1-based for files, `index` 0-based for sequences.

    `problems` holds every (field, message) wrong with the event, so one run names them all;
    `field` and `reason` are the first, for callers that show one."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        line: int | None = None,
        index: int | None = None,
        source: str | None = None,
        problems: Sequence[tuple[str | None, str]] = (),
    ) -> None:
        self.field = field
        self.line = line
        self.index = index
        self.source = source
        self.reason = message
        self.problems = list(problems) or [(field, message)]
        where = [part for part in (source, None if line is None else f"line {line}",
                                   None if index is None else f"index {index}") if part]
        if len(self.problems) == 1:
            where += [f"field '{field}'"] if field else []
            said = message
        else:
            said = "; ".join(f"field '{f}': {m}" if f else m for f, m in self.problems)
        super().__init__(f"{', '.join(where)}: {said}" if where else said)


class InvalidEventsError(DoxaError):
    """A file or sequence held invalid events; nothing from it was accepted."""

    def __init__(self, errors: Sequence[InvalidEventError], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        shown = "\n".join(f"  - {e}" for e in self.errors[:20])
        more = f"\n  ... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        super().__init__(
            f"{len(self.errors)} invalid event(s) in {source or 'input'}; nothing was ingested "
            f"(pass --skip-invalid / skip_invalid=True to ingest the valid ones):\n{shown}{more}"
        )


class ConfigError(DoxaError):
    """A setting (provider string, store URL, template path) cannot be used as given."""


class MissingCredentialsError(ConfigError):
    """A hosted model was named with no API key for it: raised before any input is read.

    `str()` speaks Python (`api_key=`, `base_url=`); `cli_message` says the same with the
    command line's flags, for `doxa ingest` and friends."""

    def __init__(self, model: str, env_var: str) -> None:
        self.model = model
        self.env_var = env_var
        super().__init__(
            f"{model} needs an API key: set {env_var} or pass api_key=; or use a local "
            "model (model=\"ollama/<model>\", or base_url= an OpenAI-compatible server such "
            "as vLLM or llama.cpp); or try doxa with no model at all: `doxa demo`"
        )

    @property
    def cli_message(self) -> str:
        return (
            f"{self.model} needs an API key. Three ways forward:\n"
            f"  - set {self.env_var} (export {self.env_var}=...)\n"
            "  - use a local model: --model ollama/<model>, or --base-url URL of an "
            "OpenAI-compatible server (vLLM, llama.cpp)\n"
            "  - try doxa with no model at all: doxa demo"
        )


class ProviderError(DoxaError):
    """The LLM provider failed; `retryable` says whether trying later could succeed."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool) -> None:
        self.status = status
        self.retryable = retryable
        self.retry_after: float | None = None
        super().__init__(message)


class ProviderAuthError(ProviderError):
    """The provider refused the credentials or the request itself (400/401/403)."""


class ContextLengthError(ProviderError):
    """The request did not fit the model's context window: a property of this request
    (its batch, or a re-ask's growing conversation), not of the model name or the key."""


class ExtractionValidationError(DoxaError):
    """The LLM's answer could not be parsed at all, even after re-asking."""

    def __init__(self, batch_id: str, reasons: Sequence[str]) -> None:
        self.batch_id = batch_id
        self.reasons = list(reasons)
        super().__init__(f"batch {batch_id}: extraction invalid: " + "; ".join(self.reasons[:5]))


class StoreError(DoxaError):
    """The store could not be opened or written."""


class StoreConflictError(StoreError):
    """Another writer committed this user's model first; reload and merge again."""

    def __init__(self, user_id: str, expected_version: int, found_version: int) -> None:
        self.user_id = user_id
        self.expected_version = expected_version
        self.found_version = found_version
        super().__init__(
            f"user {user_id}: model changed underneath this ingest "
            f"(expected version {expected_version}, found {found_version})"
        )


class SyncInEventLoopError(DoxaError, RuntimeError):
    """A `*_sync` method was called where an event loop already runs (Jupyter, an async
    app), which cannot run another: the async method is the one to use there."""

    def __init__(self, method: str) -> None:
        self.method = method
        super().__init__(
            f"{method}_sync() cannot run inside a running event loop (a Jupyter notebook, an "
            f"async app): use `await engine.{method}(...)` instead"
        )


class UnknownRecordError(DoxaError):
    """A record id was asked for that the user's model does not hold."""

    def __init__(self, user_id: str, record_id: str) -> None:
        self.user_id = user_id
        self.record_id = record_id
        super().__init__(f"user {user_id} has no record {record_id}")
