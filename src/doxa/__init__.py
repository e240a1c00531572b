"""doxa: the user-modeling layer between event collection and personalization.

Events in; beliefs, goals and preferences out, each with a confidence doxa computes from
the evidence and the chain of events that supports it.
"""

from doxa.engine import DroppedInfo, Engine, IngestResult
from doxa.errors import (
    ConfigError,
    DoxaError,
    ExtractionValidationError,
    InvalidEventError,
    InvalidEventsError,
    ProviderAuthError,
    ProviderError,
    StoreConflictError,
    StoreError,
    UnknownRecordError,
)
from doxa.events.parse import Event, load_events, load_file
from doxa.model.records import Change, EvidenceLink, Explanation, Record, Revision, UserModel
from doxa.relevance import Batch, RelevanceConfig

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Change",
    "ConfigError",
    "DoxaError",
    "DroppedInfo",
    "Engine",
    "Event",
    "EvidenceLink",
    "Explanation",
    "ExtractionValidationError",
    "IngestResult",
    "InvalidEventError",
    "InvalidEventsError",
    "ProviderAuthError",
    "ProviderError",
    "Record",
    "RelevanceConfig",
    "Revision",
    "StoreConflictError",
    "StoreError",
    "UnknownRecordError",
    "UserModel",
    "__version__",
    "load_events",
    "load_file",
]
