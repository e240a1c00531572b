"""One exception hierarchy: catch `DoxaError` for everything, or a leaf for exactly what failed.

Every exception class doxa defines lives here (tests/test_errors_home.py checks it), so a
caller finds the whole tree in one place and no module has to import another layer's
module only to catch its error. `ApiError` is the one class outside `DoxaError`: it is the
HTTP server's way for a route to answer with a problem response, never raised to a caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the server's response model; importing it at run time needs FastAPI
    from doxa.server.problems import FieldError


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


class InvalidObservationError(InvalidEventError):
    """An observation or a link given by hand that cannot be recorded, naming the field
    (an observation is stored as an event, so it is refused as one: a 422 over HTTP)."""


class SegmentNotLoadedError(DoxaError):
    """`fallback="segment"` on a model read without its segment (`segment_by=`)."""

    def __init__(self) -> None:
        super().__init__("this model was read without a segment: read it with "
                         "engine.model(user, segment_by=[...]) to fall back to the segment")


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


class AmbiguousFormatError(DoxaError):
    """An events file could be read in more than one format (or mixes formats), so which
    reader to use is the caller's call: `candidates` are the formats it could be."""

    def __init__(self, source: str, candidates: Sequence[str], reason: str) -> None:
        self.source = source
        self.candidates = list(candidates)
        self.reason = reason
        names = " or ".join(self.candidates)
        flags = " or ".join(f"--format {c}" for c in self.candidates)
        super().__init__(f"{source}: cannot tell its format: it could be {names} ({reason}); "
                         f"name it with {flags} (format= in Python)")


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


class StoreDataError(StoreError):
    """The store refused a value it was given (PostgreSQL text cannot hold a NUL byte):
    sending the same request again cannot succeed."""


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


class UserErasedError(StoreError):
    """The user was deleted after this work began; nothing from it was stored.

    Every commit carries the user's erasure generation read when its work started (an
    ingest, an outcome, a backfill run). A delete moves the generation on, so work begun
    before it is refused instead of bringing the deleted user back. Work begun after the
    delete reads the new generation and builds a fresh model.
    """

    def __init__(self, user_id: str, expected_generation: int, found_generation: int) -> None:
        self.user_id = user_id
        self.expected_generation = expected_generation
        self.found_generation = found_generation
        super().__init__(
            f"user {user_id} was deleted while this work was in flight; nothing from it "
            "was stored (send events again to start a new model for this user id)"
        )


class BufferClaimLostError(StoreError):
    """A flush's hold on a user's buffered events ended before its commit (its lease ran
    out and another worker took the events, or the user was deleted); nothing from it was
    stored, so the events are extracted once, by whoever holds them now."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        super().__init__(f"user {user_id}: this flush no longer holds the buffered events it "
                         "extracted (another worker took them over, or the user was deleted); "
                         "nothing from it was stored")


class UnknownRecordError(DoxaError):
    """A record id was asked for that the user's model does not hold."""

    def __init__(self, user_id: str, record_id: str) -> None:
        self.user_id = user_id
        self.record_id = record_id
        super().__init__(f"user {user_id} has no record {record_id}")


class SchemaError(DoxaError):
    """A schema file that cannot be used, with the line (when known) and the problem."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        self.path, self.problem, self.line = path, problem, line
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {problem}")


class InvalidFixtureError(DoxaError):
    """A fixture file cannot be used: `path` is the file, `key` the JSON path within it."""

    def __init__(self, path: str | Path, message: str, *, key: str | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.reason = message
        where = f"{self.path}, key '{key}'" if key else self.path
        super().__init__(f"{where}: {message}")


class InvalidRunFileError(DoxaError):
    """A run file cannot be read: missing, not JSON, or not a doxa eval run."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        self.reason = message
        super().__init__(f"{path}: {message}")


class InvalidCacheFileError(DoxaError):
    """A shipped eval cache file (`evals/cache/*.jsonl`) cannot be used; `line` (1-based)
    names the line that is wrong, when one is."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


class InvalidCalibrationError(DoxaError):
    """A calibration profile cannot be used: missing, not JSON, or not monotone and bounded;
    `key` names the field that is wrong."""

    def __init__(self, path: str | Path, message: str, *, key: str | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.reason = message
        where = f"{self.path}, field '{key}'" if key else self.path
        super().__init__(f"{where}: {message}")


class BackfillStateError(DoxaError):
    """The state file cannot be used for this run: another input, model or prompt."""


class ApiError(Exception):
    """Raised by the HTTP server's routes: becomes a problem response with this status and
    slug (doxa.server.problems). Not a `DoxaError`: it is an answer to an HTTP client,
    already worded for it, not a failure for a Python caller to catch."""

    def __init__(self, status: int, slug: str, detail: str, *,
                 errors: Sequence[FieldError] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        super().__init__(detail)
