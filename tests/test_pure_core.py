"""The pure core keeps no module-level mutable state: every global of every module in
doxa.core and doxa.model is a constant, a function, a class or a module.

State that outlives a call (a cache, an index, a registry) would make the result of a pure
function depend on what ran before it, in this thread or another; what is derived from a
model is kept with the model (`doxa.model.views`), not beside it.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import operator
import pkgutil
import re
import types
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import pytest
from pydantic import BaseModel

import doxa.core
import doxa.model

SCALARS = (str, int, float, bool, bytes, complex, Decimal, type(None), PurePath, re.Pattern,
           enum.Enum, range, type(Ellipsis),
           type(annotations))  # a __future__ feature: a compiler flag


def _modules() -> Iterator[str]:
    for package in (doxa.core, doxa.model):
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            yield info.name


def is_constant(value: Any) -> bool:
    """Immutable all the way down: scalars, and tuples, frozensets and read-only mappings
    of them; callables and types count as constants of a module."""
    if isinstance(value, SCALARS):
        return True
    if isinstance(value, tuple | frozenset):
        return all(is_constant(v) for v in value)
    if isinstance(value, types.MappingProxyType):
        return all(is_constant(k) and is_constant(v) for k, v in value.items())
    if isinstance(value, BaseModel) and value.model_config.get("frozen"):
        return all(is_constant(v) for _, v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and (
            value.__dataclass_params__.frozen):
        return all(is_constant(getattr(value, f.name)) for f in dataclasses.fields(value))
    return is_code(value)


def is_code(value: Any) -> bool:
    """A function, a class, a module, a type alias or another typing construct."""
    if isinstance(value, types.ModuleType | type | types.GenericAlias | typing.TypeVar):
        return True
    if inspect.isroutine(value) or type(value).__module__ in ("typing", "typing_extensions"):
        return True
    if isinstance(value, operator.attrgetter | operator.itemgetter | operator.methodcaller):
        return True
    # A pure function with a bounded memo (functools.lru_cache) answers exactly as the
    # function does; the memo is not state a result can depend on.
    return callable(value) and inspect.isfunction(getattr(value, "__wrapped__", None))


MODULES = sorted(_modules())


def test_the_core_and_model_packages_have_modules_to_check() -> None:
    assert {"doxa.core.merge", "doxa.model.records", "doxa.model.known_index"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_global_is_a_constant_a_function_a_class_or_a_module(name: str) -> None:
    module = importlib.import_module(name)
    mutable = {attr: type(value).__name__ for attr, value in vars(module).items()
               if not attr.startswith("__") and not is_constant(value)}
    assert not mutable, f"{name} holds module-level state: {mutable}"


def test_the_check_would_catch_state() -> None:
    """The kinds of state this file exists to refuse are refused."""
    import threading
    from collections import OrderedDict

    for state in ([], {}, set(), OrderedDict(), threading.Lock(), (1, []),
                  types.MappingProxyType({"a": []}), types.SimpleNamespace()):
        assert not is_constant(state), state
