"""What the report reads from a study, read once, and small accessors over frozen trials."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

NO_END = "(none)"  # the `end` of a trial that has no such user attribute


@dataclass(frozen=True)
class StudyData:
    """A study's trials, read once with ``get_trials(deepcopy=False)``, and its metadata.

    Attributes:
        name: Study name.
        directions: ``"maximize"`` / ``"minimize"``, one per objective.
        objectives: Display name of each objective.
        trials: Every trial, in number order; never mutated.
        user_attrs: The study's user attributes (``objectives``, ``retrain:<trial>``, ...).
    """

    name: str
    directions: tuple[str, ...]
    objectives: tuple[str, ...]
    trials: tuple[FrozenTrial, ...]
    user_attrs: dict[str, Any]

    @classmethod
    def read(cls, study: optuna.Study) -> StudyData:
        """Read ``study``'s trials and metadata."""
        directions = tuple(
            "maximize" if d == StudyDirection.MAXIMIZE else "minimize" for d in study.directions
        )
        return cls(
            name=study.study_name,
            directions=directions,
            objectives=objective_names(study, len(directions)),
            trials=tuple(study.get_trials(deepcopy=False)),
            user_attrs=dict(study.user_attrs),
        )

    @property
    def multi(self) -> bool:
        """Whether the study has more than one objective."""
        return len(self.directions) > 1

    def with_state(self, *states: TrialState) -> list[FrozenTrial]:
        """Trials in any of ``states``, in number order."""
        return [t for t in self.trials if t.state in states]

    def complete(self) -> list[FrozenTrial]:
        """Complete trials whose values are all finite."""
        return [
            t
            for t in self.trials
            if t.state == TrialState.COMPLETE
            and t.values is not None
            and all(math.isfinite(v) for v in t.values)
        ]

    def best(self) -> FrozenTrial | None:
        """The best complete trial by the first objective, or ``None``."""
        done = self.complete()
        if not done:
            return None
        sign = 1.0 if self.directions[0] == "maximize" else -1.0
        return max(done, key=lambda t: sign * t.values[0])

    def state_counts(self) -> Counter[str]:
        """Trials per state name."""
        return Counter(t.state.name for t in self.trials)

    def end_counts(self) -> Counter[str]:
        """Trials per ``end`` user attribute."""
        return Counter(end_of(t) for t in self.trials)


def objective_names(study: optuna.Study, n: int) -> tuple[str, ...]:
    """Objective names: study user attr ``objectives``, else optuna metric names, else defaults."""
    for names in (study.user_attrs.get("objectives"), study.metric_names):
        if isinstance(names, (list, tuple)) and len(names) == n:
            return tuple(str(x) for x in names)
    if n == 1:
        return ("val accuracy",)
    return tuple(f"objective {i}" for i in range(n))


def end_of(trial: FrozenTrial) -> str:
    """How the trial ended (user attr ``end``), or :data:`NO_END`."""
    end = trial.user_attrs.get("end")
    return str(end) if end is not None else NO_END


def family_of(trial: FrozenTrial) -> str | None:
    """Model family from the stored config, else from the ``family`` param."""
    config = trial.user_attrs.get("config")
    if isinstance(config, dict) and isinstance(config.get("model"), dict):
        family = config["model"].get("family")
        if family is not None:
            return str(family)
    family = trial.params.get("family")
    return None if family is None else str(family)


def duration_s(trial: FrozenTrial) -> float | None:
    """Seconds from start to completion, or ``None`` when either is unknown."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def curve_of(trial: FrozenTrial) -> tuple[np.ndarray, np.ndarray]:
    """Validation accuracy per epoch: intermediate values, else the ``curve`` user attribute.

    Returns:
        ``(epochs, accuracies)`` as float arrays sorted by epoch; empty when there is none.
    """
    if trial.intermediate_values:
        steps = sorted(trial.intermediate_values)
        return (
            np.asarray(steps, dtype=float),
            np.asarray([trial.intermediate_values[s] for s in steps], dtype=float),
        )
    curve = trial.user_attrs.get("curve")
    if isinstance(curve, list):
        rows = [r for r in curve if isinstance(r, dict) and "epoch" in r and "val_acc" in r]
        return (
            np.asarray([_num(r["epoch"]) for r in rows], dtype=float),
            np.asarray([_num(r["val_acc"]) for r in rows], dtype=float),
        )
    return np.empty(0), np.empty(0)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def number_attr(trial: FrozenTrial, key: str) -> float | None:
    """A numeric user attribute, or ``None`` when absent or not a number."""
    value = trial.user_attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
