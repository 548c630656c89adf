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
samples are identical to Optuna's, draw for draw (``tests/test_samplers.py`` checks it on a real
study); with it, a trial's groups all see the same snapshot of the running trials, where stock
TPE may see one that changes between groups.

It overrides one private method of Optuna's sampler (``_sample``) and calls four others.
:func:`make_tpe` therefore probes the installed Optuna once per process: a throwaway in-memory
study sampled by this sampler and by the stock one with the same seed must draw the same params.
If the names are gone, the arity changed or the draws differ, it uses the stock sampler and says
so in one warning; and should ``_sample`` still fail later, that trial is sampled by the stock
code (one warning), never failed.
"""

from __future__ import annotations

import functools
import logging
import warnings
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
        self._stock = False  # set when the shortcut failed once: stock sampling from then on

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
        if self._stock:
            return super()._sample(study, trial, search_space)
        try:
            return self._sample_once(study, trial, search_space)
        except (AttributeError, TypeError, ValueError) as exc:  # Optuna's internals drifted
            logger.warning("cifar-search's TPE shortcut failed (%s); this study samples with "
                           "the stock TPE from now on", exc)
            self._stock = True
            return super()._sample(study, trial, search_space)

    def _sample_once(
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
    """:class:`TPESampler` where the installed Optuna passes :func:`probe`, else the stock
    sampler (same samples, more time per trial)."""
    problem = probe()
    if problem is None:
        return TPESampler(**kwargs)
    logger.warning("this Optuna's TPE internals differ from those cifar-search was written "
                   "for (%s); using the stock TPESampler (same results, slower sampling)",
                   problem)
    return optuna.samplers.TPESampler(**kwargs)


@functools.cache
def probe(sampler: type[optuna.samplers.TPESampler] | None = None) -> str | None:
    """None if ``sampler`` (default :class:`TPESampler`) draws exactly what the stock TPE draws
    on a throwaway in-memory study of the default space (8 trials, well under a second); else
    what went wrong. Run once per process."""
    if not _PRIVATE_API:
        return "its private names are missing"
    cls = sampler or TPESampler

    from cifar_search.search.space import DEFAULT_SPACE, suggest_config

    def objective(trial: optuna.Trial) -> float:  # the real space: grouped, conditional params
        cfg = suggest_config(trial, DEFAULT_SPACE, epochs=1)
        return cfg.optim.lr + cfg.model.width / 1000

    draws = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        for make in (cls, optuna.samplers.TPESampler):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study = optuna.create_study(sampler=make(seed=0, n_startup_trials=3,
                                                         multivariate=True, group=True))
                try:
                    study.optimize(objective, n_trials=8)
                except Exception as exc:  # any failure of the shortcut means: do not use it
                    return f"{type(exc).__name__}: {exc}"
            draws.append([t.params for t in study.trials])
    finally:
        optuna.logging.set_verbosity(verbosity)
    return None if draws[0] == draws[1] else "its draws differ from the stock TPE's"
