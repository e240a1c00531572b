"""doxa: the user-modeling layer between event collection and personalization.

Events in; beliefs, goals and preferences out, each with a confidence doxa computes from
the evidence and the chain of events that supports it.

Everything a caller needs is importable from here and listed in `__all__`: the engine and
what its constructor takes (configs, store, schema, redactor), the models it returns, and
every error it raises on purpose (tests/test_public_api.py keeps the list whole).
"""

from doxa.calibration.outcomes import OutcomeCount
from doxa.calibration.profile import CalibrationProfile, read_profile
from doxa.core.confidence import ConfidenceConfig
from doxa.core.flush import FlushPolicy
from doxa.core.leverage import LeverageReport
from doxa.core.merge import MergeConfig, Outcome
from doxa.engine import (
    DroppedInfo,
    Engine,
    EngineConfig,
    EngineOptions,
    FlushReport,
    IngestResult,
)
from doxa.errors import (
    AmbiguousFormatError,
    BackfillStateError,
    BufferClaimLostError,
    ConfigError,
    ContextLengthError,
    DoxaError,
    ExtractionValidationError,
    InvalidCacheFileError,
    InvalidCalibrationError,
    InvalidEventError,
    InvalidEventsError,
    InvalidFixtureError,
    InvalidObservationError,
    InvalidRunFileError,
    MissingCredentialsError,
    ProviderAuthError,
    ProviderError,
    SchemaError,
    SegmentNotLoadedError,
    StoreConflictError,
    StoreDataError,
    StoreError,
    SyncInEventLoopError,
    UnknownRecordError,
    UserErasedError,
)
from doxa.events.parse import Event, load_events, load_file
from doxa.events.redaction import Redactor, default_redactor
from doxa.llm.client import RetryPolicy
from doxa.llm.extractor import ExtractionSettings
from doxa.llm.providers import Provider, ProviderSpec, parse_provider, register
from doxa.model.records import (
    CausalLink,
    Change,
    EvidenceLink,
    Explanation,
    Record,
    Revision,
    SegmentAnswer,
    UserModel,
)
from doxa.model.schema import Dimension, ModelSchema, load_schema
from doxa.model.twin import Twin
from doxa.relevance import Batch, RelevanceConfig
from doxa.store import (
    MemoryStore,
    SqliteStore,
    Store,
    open_store,
)
from doxa.usage import Usage

__version__ = "0.1.0"

__all__ = [
    "AmbiguousFormatError",
    "BackfillStateError",
    "Batch",
    "BufferClaimLostError",
    "CalibrationProfile",
    "CausalLink",
    "Change",
    "ConfidenceConfig",
    "ConfigError",
    "ContextLengthError",
    "Dimension",
    "DoxaError",
    "DroppedInfo",
    "Engine",
    "EngineConfig",
    "EngineOptions",
    "Event",
    "EvidenceLink",
    "Explanation",
    "ExtractionSettings",
    "ExtractionValidationError",
    "FlushPolicy",
    "FlushReport",
    "IngestResult",
    "InvalidCacheFileError",
    "InvalidCalibrationError",
    "InvalidEventError",
    "InvalidEventsError",
    "InvalidFixtureError",
    "InvalidObservationError",
    "InvalidRunFileError",
    "LeverageReport",
    "MemoryStore",
    "MergeConfig",
    "MissingCredentialsError",
    "ModelSchema",
    "Outcome",
    "OutcomeCount",
    "Provider",
    "ProviderAuthError",
    "ProviderError",
    "ProviderSpec",
    "Record",
    "Redactor",
    "RelevanceConfig",
    "RetryPolicy",
    "Revision",
    "SchemaError",
    "SegmentAnswer",
    "SegmentNotLoadedError",
    "SqliteStore",
    "Store",
    "StoreConflictError",
    "StoreDataError",
    "StoreError",
    "SyncInEventLoopError",
    "Twin",
    "UnknownRecordError",
    "Usage",
    "UserErasedError",
    "UserModel",
    "__version__",
    "default_redactor",
    "load_events",
    "load_file",
    "load_schema",
    "open_store",
    "parse_provider",
    "read_profile",
    "register",
]
