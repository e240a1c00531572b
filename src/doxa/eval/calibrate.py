"""`doxa eval calibrate`: fit a calibration profile from labelled runs, or from outcomes.

The label of a record is "it matched a labelled one" (the eval's own definition of right,
over the records the eval compares). A logistic regression over the record's features
(`doxa.calibration.features.inputs`) is the fit; with `isotonic`, a monotone curve over its
output follows. Weights whose sign would break monotonicity (`DIRECTION`) are left out and
the rest refitted, so the profile is monotone by construction, and it is written as plain
numbers the engine applies without scikit-learn.

The figures are never measured on what a profile was fitted on: the records are split by
case into k folds (every record of a case, in every run, in the same fold), each fold is
scored by a profile fitted on the others, and ECE, Brier, the reliability table and the
risk-coverage curve are computed from those out-of-fold probabilities, beside the same for
the evidence score. Outcome counts are split by user the same way.

scikit-learn is imported inside the functions (the `calibrate` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from doxa.calibration.features import DIRECTION, NUMERIC, RecordFeatures, inputs, log_odds
from doxa.calibration.outcomes import OutcomeCount, as_bins
from doxa.calibration.profile import (
    CalibrationProfile,
    Curve,
    Figures,
    FittedOn,
    identity_profile,
)
from doxa.calibration.reliability import BinCount, calibration, risk_coverage
from doxa.errors import ConfigError
from doxa.eval.runfile import RunFile

Method = Literal["logistic", "isotonic"]
METHODS: Final = ("logistic", "isotonic")
FOLDS: Final = 5
REGULARISATION: Final = 1.0
"""scikit-learn's C: the inverse strength of the L2 penalty on the weights."""
BASIC: Final = ("evidence_score", "supporting")
"""What every run file has of a record (its confidence and its supporting event ids)."""


@dataclass(frozen=True)
class Sample:
    """One compared record of a run: its case (the fold unit), features and label."""

    group: str
    features: RecordFeatures
    right: int


@dataclass(frozen=True)
class Labelled:
    """The records of the runs, and what the profile fitted on them is for."""

    samples: list[Sample]
    model: str
    prompt_version: str
    inputs: tuple[str, ...]
    """The numeric inputs every record has (old run files lack all but `BASIC`)."""


def _require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError("fitting a calibration profile needs scikit-learn: "
                          "pip install 'doxa[calibrate]'") from None


def labelled_records(runs: Sequence[tuple[str, RunFile]]) -> Labelled:
    """Every compared record of every case that ran, labelled matched or not.

    Oracle runs (every proposal is a labelled record) and baseline runs are another
    "model" and are refused, as are runs of different models or prompt versions."""
    if not runs:
        raise ConfigError("give at least one run file")
    for path, run in runs:
        if run.oracle:
            raise ConfigError(f"{path}: an oracle run (labels fed through merge) says nothing "
                              "about a model's records; fit on a run of the model itself")
        if run.baseline is not None:
            raise ConfigError(f"{path}: a baseline run ({run.baseline}); fit on doxa's runs")
    pairs = {(run.model, run.prompt_version) for _, run in runs}
    if len(pairs) > 1:
        shown = ", ".join(f"{m} · {v or '–'}" for m, v in sorted(pairs))
        raise ConfigError(f"the runs are of different models or prompt versions ({shown}); "
                          "a profile is for one of each: fit one per pair")
    (model, prompt_version), = pairs
    if "," in prompt_version:
        raise ConfigError(f"the run mixes prompt versions ({prompt_version}); a profile is "
                          "for one")
    samples: list[Sample] = []
    full = True
    for _, run in runs:
        for case in run.cases:
            if case.error is not None or case.baseline is not None:
                continue
            scored = case.scored()
            matched = scored.matched_ids()
            for p in scored.compared():
                full = full and p.features is not None
                features = p.features or RecordFeatures(
                    evidence_score=p.confidence, kind=p.kind, supporting=len(set(p.evidence)))
                samples.append(Sample(case.case_id, features, int(p.id in matched)))
    if not samples:
        raise ConfigError("the runs hold no scored records to fit on")
    names = tuple(n for n in NUMERIC if full or n in BASIC)
    return Labelled(samples, model, prompt_version, names)


def _columns(names: Sequence[str], kinds: Sequence[str]) -> list[str]:
    return [*names, *(f"kind:{k}" for k in kinds)]


def _matrix(samples: Sequence[Sample], columns: Sequence[str]) -> list[list[float]]:
    rows = []
    for s in samples:
        known = inputs(s.features)
        rows.append([known.get(c, 0.0) for c in columns])
    return rows


def fit_samples(samples: Sequence[Sample], names: Sequence[str], *, method: Method,
                model: str, prompt_version: str, name: str) -> CalibrationProfile:
    """One profile fitted on these samples (no figures: see `cross_validate`)."""
    _require_sklearn()
    from sklearn.linear_model import LogisticRegression

    labels = [s.right for s in samples]
    kinds = sorted({s.features.kind for s in samples})
    if len(set(labels)) < 2:
        # Nothing to separate: every record right or every record wrong. The honest
        # profile is that rate, whatever the features (a zero-weight logistic).
        rate = min(max(sum(labels) / len(labels), 1e-3), 1 - 1e-3)
        return CalibrationProfile(name=name, model=model, prompt_version=prompt_version,
                                  method=method, intercept=log_odds(rate), weights={})
    columns = _columns(names, kinds)
    while True:
        fit = LogisticRegression(C=REGULARISATION, max_iter=2000)
        fit.fit(_matrix(samples, columns), labels)
        weights = dict(zip(columns, (float(w) for w in fit.coef_[0]), strict=True))
        wrong = [c for c, w in weights.items() if w * DIRECTION.get(c, 0) < 0]
        if not wrong:
            break
        columns = [c for c in columns if c not in wrong]
    profile = CalibrationProfile(name=name, model=model, prompt_version=prompt_version,
                                 method=method, intercept=float(fit.intercept_[0]),
                                 weights=weights)
    if method == "isotonic":
        profile = profile.model_copy(update={"curves": (
            _isotonic([profile.probability(s.features) for s in samples], labels),)})
    return profile


def _isotonic(x: Sequence[float], y: Sequence[float],
              weights: Sequence[float] | None = None) -> Curve:
    """The monotone least-squares fit of y on x, as the knots of a `Curve`."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(list(x), list(y), sample_weight=None if weights is None else list(weights))
    knots: dict[float, float] = {}
    for kx, ky in zip(iso.X_thresholds_, iso.y_thresholds_, strict=True):
        knots[float(kx)] = max(knots.get(float(kx), 0.0), float(ky))
    xs = sorted(knots)
    ys: list[float] = []
    for k in xs:  # never falling, even where scikit-learn's float sums wobble
        ys.append(max(knots[k], ys[-1] if ys else 0.0))
    return Curve(x=tuple(xs), y=tuple(min(1.0, v) for v in ys))


def _folds(groups: Sequence[str], folds: int) -> list[tuple[list[int], list[int]]]:
    from sklearn.model_selection import GroupKFold

    distinct = len(set(groups))
    if distinct < 2:
        raise ConfigError(f"cross-validation by case needs at least 2 cases (have {distinct})")
    k = min(folds, distinct)
    splitter = GroupKFold(n_splits=k)
    return [(list(a), list(b)) for a, b in splitter.split(list(groups), groups=list(groups))]


def cross_validate(data: Labelled, *, method: Method, folds: int = FOLDS) -> Figures:
    """Out-of-fold figures by case (see the module docstring), beside the evidence score."""
    _require_sklearn()
    samples = data.samples
    predicted = [0.0] * len(samples)
    splits = _folds([s.group for s in samples], folds)
    for train, test in splits:
        profile = fit_samples([samples[i] for i in train], data.inputs, method=method,
                              model=data.model, prompt_version=data.prompt_version, name="fold")
        for i in test:
            predicted[i] = profile.probability(samples[i].features)
    before = [(s.features.evidence_score, s.right) for s in samples]
    after = [(p, s.right) for p, s in zip(predicted, samples, strict=True)]
    return Figures(folds=len(splits), before=calibration(before), after=calibration(after),
                   risk_before=risk_coverage(before), risk_after=risk_coverage(after))


def fit_runs(runs: Sequence[tuple[str, RunFile]], *, name: str, method: Method = "logistic",
             folds: int = FOLDS) -> CalibrationProfile:
    """The profile for the runs' model and prompt version, with its cross-validated figures."""
    if method not in METHODS:
        raise ConfigError(f"--method '{method}': use one of {', '.join(METHODS)}")
    data = labelled_records(runs)
    figures = cross_validate(data, method=method, folds=folds)
    profile = fit_samples(data.samples, data.inputs, method=method, model=data.model,
                          prompt_version=data.prompt_version, name=name)
    return profile.model_copy(update={
        "figures": figures, "created_at": datetime.now(UTC),
        "fitted_on": FittedOn(runs=tuple(path for path, _ in runs),
                              case_ids=tuple(sorted({s.group for s in data.samples})),
                              cases=len({s.group for s in data.samples}),
                              records=len(data.samples),
                              right=sum(s.right for s in data.samples), source="runs")})


# -- from outcomes -------------------------------------------------------------------------


def _recurve(base: CalibrationProfile, counts: Sequence[OutcomeCount]) -> CalibrationProfile:
    """The base profile followed by a monotone curve from its delivered confidence to the
    outcome rate, fitted on these counts (each bin at its mean confidence, weighted by n)."""
    rows = [c for c in counts if c.n]
    curve = _isotonic([c.confidence_sum / c.n for c in rows], [c.right / c.n for c in rows],
                      [c.n for c in rows])
    return base.model_copy(update={"curves": (*base.curves, curve), "figures": None,
                                   "method": f"{base.method}+outcomes"})


def _through(profile: CalibrationProfile, base: CalibrationProfile,
             counts: Sequence[OutcomeCount]) -> list[BinCount]:
    """Held-out counts as the refitted profile would have binned them: each bin's mean
    confidence through the profile's extra curve (bins move together; n and right stay)."""
    from doxa.calibration.reliability import bin_of

    extra = profile.curves[len(base.curves):]
    moved: list[BinCount] = []
    for c in counts:
        p = c.confidence_sum / c.n
        for curve in extra:
            p = curve(p)
        moved.append(BinCount(bin=bin_of(p), n=c.n, right=c.right, confidence_sum=p * c.n))
    return moved


def fit_outcomes(counts: Sequence[OutcomeCount], base: CalibrationProfile | None, *,
                 name: str, model: str, prompt_version: str,
                 folds: int = FOLDS) -> CalibrationProfile:
    """Refit from outcome counts: the profile they were delivered under (identity when they
    were delivered uncalibrated) with a curve to the outcome rate appended; figures are
    cross-validated by user (none with fewer than two users)."""
    from doxa.calibration.reliability import calibration_from_counts

    _require_sklearn()
    rows = [c for c in counts if c.n]
    if not rows:
        raise ConfigError("no outcomes recorded for that profile yet")
    start = (base or identity_profile(model, prompt_version)).model_copy(
        update={"name": name, "created_at": datetime.now(UTC)})
    profile = _recurve(start, rows)
    users = sorted({c.user_id for c in rows})
    figures = None
    if len(users) >= 2:
        held: list[BinCount] = []
        splits = _folds([c.user_id for c in rows], folds)
        for train, test in splits:
            fold = _recurve(start, [rows[i] for i in train])
            held += _through(fold, start, [rows[i] for i in test])
        figures = Figures(folds=len(splits), before=calibration_from_counts(as_bins(rows)),
                          after=calibration_from_counts(held))
    return profile.model_copy(update={"figures": figures, "fitted_on": FittedOn(
        cases=len(users), records=sum(c.n for c in rows), right=sum(c.right for c in rows),
        source="outcomes")})


def summary(profile: CalibrationProfile) -> dict[str, Any]:
    """The figures a person reads first, by name."""
    f = profile.figures
    return {
        "profile": profile.name, "model": profile.model,
        "prompt_version": profile.prompt_version, "method": profile.method,
        "cases": profile.fitted_on.cases, "records": profile.fitted_on.records,
        "right": profile.fitted_on.right, "folds": f.folds if f else None,
        "ece_before": f.before.ece if f else None, "ece_after": f.after.ece if f else None,
        "brier_before": f.before.brier if f else None,
        "brier_after": f.after.brier if f else None,
    }
