"""Reading a study back: a pandas table of trials, counts, the best trial's config."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: outcome, cost and the key params (all params as ``p_<name>``)."""
    rows = []
    attrs = study.user_attrs
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name.lower(),
            "end": t.user_attrs.get("end", ""),
            "value": t.values[0] if t.values else math.nan,
        }
        if t.values and len(t.values) > 1:
            for i, v in enumerate(t.values[1:], start=1):
                row[f"value_{i}"] = v
        config = t.user_attrs.get("config") or {}
        row["family"] = (config.get("model") or {}).get("family", "")
        row["batch_size"] = config.get("batch_size")
        row["optimizer"] = (config.get("optim") or {}).get("optimizer", "")
        row["schedule"] = (config.get("optim") or {}).get("schedule", "")
        row["val_acc_best"] = max(t.intermediate_values.values(), default=math.nan)
        row["epochs_run"] = t.user_attrs.get("epochs_run", len(t.intermediate_values))
        row["n_params"] = t.user_attrs.get("n_params")
        row["flops"] = t.user_attrs.get("flops")
        row["train_seconds"] = t.user_attrs.get("train_seconds")
        row["test_acc"] = (attrs.get(retrain_key(t.number)) or {}).get("test_acc_mean")
        row["preset"] = t.user_attrs.get("preset", "")
        row.update({f"p_{k}": v for k, v in t.params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Counts by how trials ended (``end`` attribute, else Optuna state)."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get("end") or t.state.name.lower()
        if t.state == TrialState.RUNNING:
            key = "running"
        elif t.state == TrialState.WAITING:
            key = "waiting"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def time_spent(study: optuna.Study) -> timedelta:
    total = timedelta()
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start and t.datetime_complete:
            total += t.datetime_complete - t.datetime_start
    return total


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several)."""
    if len(study.directions) > 1:
        return list(study.best_trials)
    try:
        return [study.best_trial]
    except ValueError:
        return []


def retrain_key(trial_number: int | None, preset: str | None = None) -> str:
    """Study user-attribute key holding a retrain's results.

    Optuna does not allow attributes to change once a trial has finished, so retrain results
    live on the study, keyed by trial number (``retrain:12``) or preset (``retrain:preset:x``).
    """
    return f"retrain:preset:{preset}" if preset else f"retrain:{trial_number}"


def retrain_record(study: optuna.Study, trial_number: int) -> dict[str, Any] | None:
    record = study.user_attrs.get(retrain_key(trial_number))
    return dict(record) if record else None
