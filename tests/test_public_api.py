"""`doxa.__all__` is the public API: every name resolves, and what `Engine` takes is in it."""

from __future__ import annotations

import inspect
import typing

import doxa


def test_every_name_in_all_resolves() -> None:
    missing = [name for name in doxa.__all__ if not hasattr(doxa, name)]
    assert missing == []
    assert len(set(doxa.__all__)) == len(doxa.__all__)


def test_configs_and_errors_are_exported() -> None:
    for name in ("ContextLengthError", "SchemaError", "MergeConfig", "ExtractionSettings",
                 "RetryPolicy", "RelevanceConfig", "open_store", "Store", "ModelSchema"):
        assert name in doxa.__all__, name


def test_every_class_the_engine_constructor_takes_is_exported() -> None:
    """A caller can build each argument of `Engine(...)` from `doxa` alone."""
    hints = typing.get_type_hints(doxa.Engine.__init__)
    wanted = set()
    for name in inspect.signature(doxa.Engine.__init__).parameters:
        for arg in typing.get_args(hints.get(name)) or (hints.get(name),):
            if isinstance(arg, type) and arg.__module__.startswith("doxa."):
                wanted.add(arg.__name__)
    assert wanted - set(doxa.__all__) == set()
