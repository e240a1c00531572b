"""Built-in baselines for `doxa eval run --baseline NAME`: references doxa is measured against.

A baseline answers each case its own way and returns a scored `CaseResult`; the runner
writes its run file like any other, marked with the baseline's name, so `doxa eval compare`
and `doxa eval report --baseline` can set doxa beside it. Only `naive` exists today.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from doxa.errors import ConfigError
from doxa.eval.fixtures import Case
from doxa.eval.match import Matcher
from doxa.eval.runfile import CaseResult

if TYPE_CHECKING:
    from doxa.eval.runner import RunSettings


class Baseline(Protocol):
    """What the runner needs of a baseline."""

    name: str

    @property
    def prompt_version(self) -> str:
        """The version of what it asks, recorded in the run file."""

    async def run_case(self, case: Case, matcher: Matcher) -> CaseResult:
        """Answer one case and score the answer."""

    async def close(self) -> None:
        """Release its client and cache."""


def _naive(settings: RunSettings) -> Baseline:
    from doxa.eval.naive import NaiveBaseline

    return NaiveBaseline.from_settings(settings)


BASELINES: Mapping[str, Callable[[RunSettings], Baseline]] = MappingProxyType({"naive": _naive})


def check_baseline(settings: RunSettings) -> None:
    """A known baseline name, and none of the options that only mean something to doxa."""
    if settings.baseline is None:
        return
    if settings.baseline not in BASELINES:
        raise ConfigError(f"--baseline: unknown baseline '{settings.baseline}'; "
                          f"known: {', '.join(sorted(BASELINES))}")
    clashes = [flag for flag, given in (("--oracle", settings.oracle),
                                        ("--schema", settings.schema_file is not None),
                                        ("--prompt", settings.prompt_dir is not None)) if given]
    if clashes:
        raise ConfigError(
            f"--baseline {settings.baseline} cannot be combined with {', '.join(clashes)}: "
            "a baseline asks its own fixed question (run doxa itself for those)")


def make_baseline(settings: RunSettings) -> Baseline:
    """The baseline `settings.baseline` names, built from the run's model and options."""
    check_baseline(settings)
    if settings.baseline is None:
        raise ConfigError("--baseline: no baseline named (known: "
                          f"{', '.join(sorted(BASELINES))})")
    return BASELINES[settings.baseline](settings)
