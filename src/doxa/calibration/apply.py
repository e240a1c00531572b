"""A model's calibrated view: each record's confidence read through its profile.

Only the number delivery reads changes: the stored records, their evidence and history stay
as merge made them, and the evidence arithmetic moves to `Record.evidence_score` so both
numbers are there to explain. A record is calibrated by the profile of the model and the
prompt version that produced it; a model is `calibrated` only when every record was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from doxa.calibration.features import record_features
from doxa.calibration.profile import (
    CalibrationProfile,
    profiles_for,
    read_profile,
    search_path,
)
from doxa.model.records import Record, UserModel
from doxa.relevance import RelevanceConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibrator:
    """The profiles an engine applies: one given outright (`only`), or its model's profiles
    by prompt version."""

    by_prompt_version: Mapping[str, CalibrationProfile] = field(default_factory=dict)
    only: CalibrationProfile | None = None
    relevance: RelevanceConfig | None = None

    def profile_for(self, record: Record) -> CalibrationProfile | None:
        return self.only or self.by_prompt_version.get(record.prompt_version)

    def confidence(self, record: Record, model: UserModel) -> tuple[float, str | None]:
        """The record's calibrated confidence and the profile's name; its evidence score
        and None when no profile covers it."""
        profile = self.profile_for(record)
        if profile is None:
            return record.confidence, None
        features = record_features(record, model.events, relevance=self.relevance)
        return profile.probability(features), profile.name

    def calibrate(self, model: UserModel) -> UserModel:
        """The model as delivery should read it (see the module docstring)."""
        records: list[Record] = []
        every = True
        for record in model.records:
            if record.evidence_score is not None:  # read through a profile already
                records.append(record)
                continue
            confidence, name = self.confidence(record, model)
            if name is None:
                every = False
                records.append(record)
            else:
                records.append(record.model_copy(update={
                    "confidence": confidence, "evidence_score": record.confidence}))
        calibrated = every and (self.only is not None or bool(self.by_prompt_version))
        return model.model_copy(update={"records": tuple(records), "calibrated": calibrated})


def make_calibrator(calibration: CalibrationProfile | str | Path | Literal[False] | None,
                    model: str, relevance: RelevanceConfig | None = None) -> Calibrator:
    """What an engine applies (see `EngineConfig.calibration`): a profile or profile file
    outright; nothing for False; else the model's profiles found in the folder given,
    `DOXA_CALIBRATION_DIR` and the shipped profiles, in that order."""
    if calibration is False:
        return Calibrator(relevance=relevance)
    if isinstance(calibration, CalibrationProfile):
        return Calibrator(only=calibration, relevance=relevance)
    if calibration is not None and not Path(calibration).is_dir():
        profile = read_profile(calibration)
        if profile.model != model:
            log.warning("calibration profile %s was fitted for %s, not %s", calibration,
                        profile.model, model)
        return Calibrator(only=profile, relevance=relevance)
    folders = search_path([calibration] if calibration is not None else [])
    return Calibrator(profiles_for(model, folders), relevance=relevance)
