"""Optuna's TPE, with the history read and split once per trial instead of once per group.

Grouped TPE (``multivariate=True, group=True``) samples each group of parameters that always
occur together on its own: the default space decomposes into about 27 such groups, because
each model family and option brings its own conditional parameters. For every group, stock
:class:`optuna.samplers.TPESampler` re-reads the finished trials (with the constant liar, a
storage query that also returns running trials) and re-sorts all of them into "below" (good)
and "above" trials, though neither the history nor the split depends on the group. At a few
hundred trials that repeated split is a large share of the search's own cost per trial
(``bench/bench_overhead.py``, ``bench/RESULTS.md``).

:class:`TPESampler` does the read and the split once per trial and reuses them for every group
and for any independently sampled parameter of the same trial. Without the constant liar the
samples are identical to Optuna's, draw for draw (``tests/test_tpe.py`` checks it on a real
study); with it, a trial's groups all see the same snapshot of the running trials, where stock
TPE may see one that changes between groups.

It overrides one private method of Optuna's sampler (``_sample``) and calls four others. If a
future Optuna renames them, :func:`make_tpe` falls back to the stock sampler, and the test above
fails, so the drift cannot go unnoticed.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)

try:
    from optuna.samplers._tpe.sampler import (
        _split_trials,
        default_gamma,
        default_gamma_multiobjective,
    )

    _PRIVATE_API = all(
        hasattr(optuna.samplers.TPESampler, name)
        for name in ("_sample", "_build_parzen_estimator", "_compute_acquisition_func",
                     "_compare")
    )
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _PRIVATE_API = False


class TPESampler(optuna.samplers.TPESampler):
    """:class:`optuna.samplers.TPESampler` that splits the history once per trial."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # (trial id, (below, above)); one trial samples at a time per sampler and process
        self._split_memo: tuple[int, tuple[list[FrozenTrial], list[FrozenTrial]]] | None = None

    def _split(self, study: optuna.Study, trial: FrozenTrial) -> tuple[
        list[FrozenTrial], list[FrozenTrial]
    ]:
        if self._split_memo is not None and self._split_memo[0] == trial._trial_id:
            return self._split_memo[1]
        # Same history and split as TPESampler._sample computes, once.
        states = [TrialState.COMPLETE, TrialState.PRUNED]
        if self._constant_liar:
            states.append(TrialState.RUNNING)
        trials = study._get_trials(deepcopy=False, states=states,
                                   use_cache=not self._constant_liar)
        if self._constant_liar:
            trials = [t for t in trials if t.number != trial.number]
        if self._gamma is None:
            self._gamma = (default_gamma if len(study.directions) <= 1
                           else default_gamma_multiobjective)
        n = sum(t.state != TrialState.RUNNING for t in trials)  # running trials do not count
        split = _split_trials(study, trials, self._gamma(n))
        self._split_memo = (trial._trial_id, split)
        return split

    def _sample(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        below, above = self._split(study, trial)
        mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above, handle_below=False)
        samples = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq = self._compute_acquisition_func(samples, mpe_below, mpe_above)
        best = optuna.samplers.TPESampler._compare(samples, acq)
        return {name: dist.to_external_repr(best[name]) for name, dist in search_space.items()}


def make_tpe(**kwargs: Any) -> optuna.samplers.TPESampler:
    """:class:`TPESampler` where the installed Optuna has the internals it relies on, else the
    stock sampler (same samples, more time per trial)."""
    if _PRIVATE_API:
        return TPESampler(**kwargs)
    logger.warning("this Optuna's TPE internals differ from those cifar-search was written "
                   "for; using the stock TPESampler (same results, slower sampling)")
    return optuna.samplers.TPESampler(**kwargs)
