"""Successive-halving pruners that are asked only at the steps where they can act.

Optuna's :class:`~optuna.pruners.SuccessiveHalvingPruner` (and :class:`HyperbandPruner`, one of
them per bracket) reads the running trial's system attributes to find its rung. Those attributes
are lazy: every ``trial.should_prune()`` costs a full read of the trial from the storage (its
params, user attributes and intermediate values; about 2 ms on SQLite), even at the steps where
the answer is "no" by construction. A trial can only be promoted or stopped at a rung step,
``min_resource * reduction_factor**k``; at any other step the stock pruner returns ``False``.

The subclasses here return that ``False`` without the read, and defer to Optuna whenever a rung
step lies between the last step they were asked about and this one, so steps reported sparsely
(every other epoch, say) are handled exactly as Optuna handles them. Subclassing rather than
wrapping keeps ``isinstance(pruner, HyperbandPruner)``, which Optuna uses to give samplers the
trial's bracket. ``bench/bench_overhead.py`` measures the saving.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial


class _RungSteps:
    """Remembers, per trial, the last step the pruner was asked about, and says whether a
    rung step lies in ``(last, step]``."""

    def __init__(self, min_resource: int, reduction_factor: int) -> None:
        if min_resource < 1:
            raise ValueError(f"min_resource must be >= 1, got {min_resource}")
        if reduction_factor < 2:
            raise ValueError(f"reduction_factor must be >= 2, got {reduction_factor}")
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self._asked: dict[int, int] = {}  # trial id -> last step asked about

    def next_rung(self, after: int) -> int:
        """The smallest rung step greater than ``after``."""
        rung = self.min_resource
        while rung <= after:
            rung *= self.reduction_factor
        return rung

    def worth_asking(self, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        last = self._asked.get(trial._trial_id, 0)
        self._asked[trial._trial_id] = step
        return step >= self.next_rung(last)


class RungHyperbandPruner(optuna.pruners.HyperbandPruner):
    """:class:`optuna.pruners.HyperbandPruner` that skips the storage read at non-rung steps."""

    def __init__(self, min_resource: int, max_resource: int, reduction_factor: int = 3) -> None:
        super().__init__(
            min_resource=min_resource, max_resource=max_resource,
            reduction_factor=reduction_factor,
        )
        self._rungs = _RungSteps(min_resource, reduction_factor)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self._rungs.worth_asking(trial) and super().prune(study, trial)


class RungHalvingPruner(optuna.pruners.SuccessiveHalvingPruner):
    """:class:`optuna.pruners.SuccessiveHalvingPruner` that skips the storage read at non-rung
    steps."""

    def __init__(self, min_resource: int, reduction_factor: int = 4) -> None:
        super().__init__(min_resource=min_resource, reduction_factor=reduction_factor)
        self._rungs = _RungSteps(min_resource, reduction_factor)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self._rungs.worth_asking(trial) and super().prune(study, trial)
