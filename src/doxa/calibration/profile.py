"""A calibration profile: small JSON that turns a record's features into a probability.

    p = curves(sigmoid(intercept + Σ weight·input))

`inputs` (see `doxa.calibration.features`) are the evidence score as log-odds, counts as
log(1 + n), shares as they are and one-hot kinds; each curve is a monotone piecewise-linear
map of [0, 1] onto [0, 1] (an isotonic fit's knots), applied in order. Applying it needs no
fitting library, only this arithmetic, so the engine calibrates without scikit-learn.

A profile is checked when it is read: directed weights have their sign (`DIRECTION`) and
curves never fall, so a record that is at least as well evidenced as another in every
directed feature, and alike in the rest, never gets the lower probability. The identity
profile (one weight of 1 on the evidence score) changes nothing.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from doxa.calibration.features import DIRECTION, NUMERIC, RecordFeatures, inputs, sigmoid
from doxa.calibration.reliability import Calibration, RiskPoint
from doxa.errors import InvalidCalibrationError

FORMAT: Final = "doxa-calibration"
FORMAT_VERSION: Final = 1
ENV_DIR: Final = "DOXA_CALIBRATION_DIR"
"""A folder of profiles the engine searches by model and prompt version."""
DIGITS: Final = 6


class Curve(BaseModel):
    """A monotone map of [0, 1] onto [0, 1] through its knots; flat beyond the end knots."""

    model_config = ConfigDict(frozen=True)

    x: tuple[float, ...]
    y: tuple[float, ...]

    @model_validator(mode="after")
    def _monotone_and_bounded(self) -> Curve:
        if len(self.x) != len(self.y) or not self.x:
            raise ValueError("x and y must be non-empty and of the same length")
        if any(not 0.0 <= v <= 1.0 for v in (*self.x, *self.y)):
            raise ValueError("knots must lie in [0, 1]")
        if any(b <= a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("x must be strictly increasing")
        if any(b < a for a, b in zip(self.y, self.y[1:], strict=False)):
            raise ValueError("y must never decrease (the map is monotone)")
        return self

    def __call__(self, p: float) -> float:
        i = bisect_right(self.x, p)
        if i == 0:
            return self.y[0]
        if i == len(self.x):
            return self.y[-1]
        x0, x1, y0, y1 = self.x[i - 1], self.x[i], self.y[i - 1], self.y[i]
        return y0 + (y1 - y0) * (p - x0) / (x1 - x0)


class Figures(BaseModel):
    """Cross-validated by case: the evidence score (`before`) and the profile (`after`),
    each scored on records the fold's profile never saw."""

    model_config = ConfigDict(frozen=True)

    folds: int
    before: Calibration
    after: Calibration
    risk_before: tuple[RiskPoint, ...] = ()
    risk_after: tuple[RiskPoint, ...] = ()


class FittedOn(BaseModel):
    """What a profile was fitted on: enough to judge whether it applies to you."""

    model_config = ConfigDict(frozen=True)

    runs: tuple[str, ...] = ()
    case_ids: tuple[str, ...] = ()
    """The labelled cases (or, from outcomes, the users) it was fitted on: an eval over any of
    them would score the profile on its own training data."""
    cases: int = 0
    records: int = 0
    right: int = 0
    source: Literal["runs", "outcomes", "hand"] = "runs"


class CalibrationProfile(BaseModel):
    """One (model, prompt version)'s calibration; see the module docstring."""

    model_config = ConfigDict(frozen=True)

    format: Literal["doxa-calibration"] = FORMAT
    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1)
    model: str
    """The provider model as the engine labels it (`openai/qwen2.5-coder-1.5b-instruct`)."""
    prompt_version: str
    """The prompt version records carry (`extract@794fc5fbad`)."""
    method: str = "logistic"
    intercept: float = 0.0
    weights: dict[str, float] = Field(default_factory=dict)
    curves: tuple[Curve, ...] = ()
    fitted_on: FittedOn = FittedOn(source="hand")
    figures: Figures | None = None
    created_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _known_inputs_with_their_signs(self) -> CalibrationProfile:
        for name, weight in self.weights.items():
            if name not in NUMERIC and not name.startswith("kind:"):
                raise ValueError(f"weights: unknown input '{name}' (use {', '.join(NUMERIC)} "
                                 "or kind:NAME)")
            sign = DIRECTION.get(name, 0)
            if weight * sign < 0:
                raise ValueError(f"weights: '{name}' must be {'≥' if sign > 0 else '≤'} 0 "
                                 "(more of it never makes a record less likely right)")
        return self

    def probability(self, features: RecordFeatures) -> float:
        """The probability that the record is right (a kind the profile never saw weighs 0)."""
        known = inputs(features)
        z = self.intercept + sum(w * known.get(n, 0.0) for n, w in self.weights.items())
        p = sigmoid(z)
        for curve in self.curves:
            p = curve(p)
        return round(min(1.0, max(0.0, p)), DIGITS)


def identity_profile(model: str = "", prompt_version: str = "") -> CalibrationProfile:
    """The profile that changes nothing: probability = evidence score."""
    return CalibrationProfile(name="identity", model=model, prompt_version=prompt_version,
                              method="identity", weights={"evidence_score": 1.0})


def read_profile(path: str | Path) -> CalibrationProfile:
    """Read a profile file; `InvalidCalibrationError` names the file and field at fault."""
    p = Path(path)
    try:
        data: Any = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidCalibrationError(p, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidCalibrationError(p, f"not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidCalibrationError(p, f"not a doxa calibration profile (no \"format\": "
                                         f"\"{FORMAT}\")")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise InvalidCalibrationError(p, "written by a newer doxa; upgrade doxa to read it",
                                      key="format_version")
    try:
        return CalibrationProfile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or None
        raise InvalidCalibrationError(p, str(err["msg"]).removeprefix("Value error, "),
                                      key=where) from None


def write_profile(profile: CalibrationProfile, path: str | Path) -> Path:
    """Write the profile as indented JSON, creating the folder; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(profile.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
    return p


def profiles_in(folder: str | Path) -> list[CalibrationProfile]:
    """Every profile in the folder (`*.json`), by file name; a bad file is an error, not
    skipped, so a typo in a profile never silently leaves records uncalibrated."""
    return [read_profile(p) for p in sorted(Path(folder).glob("*.json"))]


def search_path(explicit: Iterable[str | Path] = (),
                environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where profiles are looked for, first match wins: the folders given, then
    `DOXA_CALIBRATION_DIR` (os.pathsep-separated), then the profiles shipped with doxa."""
    from doxa.resources import data_dir

    env = os.environ if environ is None else environ
    folders = [Path(f) for f in explicit]
    folders += [Path(f) for f in env.get(ENV_DIR, "").split(os.pathsep) if f]
    # A checkout or wheel without shipped profiles has only the user's own.
    with suppress(FileNotFoundError):
        folders.append(data_dir("calibration"))
    return folders


def profiles_for(model: str, folders: Iterable[Path]) -> dict[str, CalibrationProfile]:
    """The model's profiles by prompt version, the first folder's winning a tie."""
    found: dict[str, CalibrationProfile] = {}
    for folder in folders:
        if folder.is_dir():
            for profile in profiles_in(folder):
                if profile.model == model:
                    found.setdefault(profile.prompt_version, profile)
    return found
