"""Progress over trials: best so far and the running trial's epoch, on one tqdm line."""

from __future__ import annotations

import math
import sys

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from cifar_search.search.study import counts_toward_total
from cifar_search.train.trainer import EpochMetrics


class TrialProgress:
    """A study callback (trial ended) and an objective ``on_epoch`` hook (epoch ended)."""

    def __init__(self, total: int, initial: int, epochs: int, *, enabled: bool = True) -> None:
        self.bar = tqdm(total=total, initial=initial, unit="trial", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True)
        self.epochs = epochs
        self.best = math.nan
        self.current = ""

    def on_epoch(self, number: int, epoch: int, m: EpochMetrics) -> None:
        self.current = f"#{number} epoch {epoch}/{self.epochs} val {100 * m.val_acc:.1f}%"
        self._show()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and counts_toward_total(trial):
            self.bar.update(1)
        if trial.state == TrialState.COMPLETE and trial.values:
            v = trial.values[0]
            self.best = v if math.isnan(self.best) else max(self.best, v)
        self.current = f"#{trial.number} {trial.user_attrs.get('end', trial.state.name.lower())}"
        self._show()

    def _show(self) -> None:
        best = "-" if math.isnan(self.best) else f"{100 * self.best:.2f}%"
        self.bar.set_postfix_str(f"best {best} | {self.current}", refresh=True)

    def close(self) -> None:
        self.bar.close()
