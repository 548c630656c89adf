"""cifar-search's TPE samples exactly what Optuna's grouped TPE samples, splitting once a trial."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

import cifar_search.search.samplers as tpe
from cifar_search.search.budget import BUDGETS
from cifar_search.search.space import DEFAULT_SPACE, suggest_config
from cifar_search.search.study import make_pruner


def default_space_objective(epochs: int) -> Callable[[optuna.Trial], float]:
    """The real default space (27 groups of conditional params), a synthetic learning curve."""

    def run(trial: optuna.Trial) -> float:
        suggest_config(trial, DEFAULT_SPACE, epochs=epochs)
        rng = random.Random(repr(sorted(trial.params.items())))
        ceiling, acc = rng.uniform(0.5, 0.95), 0.0
        for epoch in range(1, epochs + 1):
            acc = ceiling * (1 - math.exp(-epoch / 3))
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    return run


def sampled(sampler: optuna.samplers.BaseSampler, n: int,
            storage: str | None = None) -> list[dict[str, Any]]:
    study = optuna.create_study(  # a fixed name: Hyperband's brackets hash it
        study_name="tpe", storage=storage, direction="maximize", sampler=sampler,
        pruner=make_pruner("hyperband", BUDGETS["smoke"].override(epochs=9)),
    )
    study.optimize(default_space_objective(9), n_trials=n)
    return [t.params for t in study.trials]


TPE_ARGS: dict[str, Any] = {"seed": 3, "multivariate": True, "group": True,
                            "n_startup_trials": 5}


def test_samples_are_identical_to_optunas_grouped_tpe() -> None:
    ours = sampled(tpe.TPESampler(**TPE_ARGS), 30)
    stock = sampled(optuna.samplers.TPESampler(**TPE_ARGS), 30)
    assert ours == stock
    assert len({repr(p) for p in ours}) == 30


def test_identical_on_sqlite(tmp_path: Path) -> None:
    ours = sampled(tpe.TPESampler(**TPE_ARGS), 15, f"sqlite:///{tmp_path / 'a.db'}")
    stock = sampled(optuna.samplers.TPESampler(**TPE_ARGS), 15, f"sqlite:///{tmp_path / 'b.db'}")
    assert ours == stock


def test_the_history_is_split_once_per_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = tpe._split_trials

    def counted(study: optuna.Study, trials: list[Any], n_below: int) -> Any:
        calls.append(len(trials))
        return real(study, trials, n_below)

    monkeypatch.setattr(tpe, "_split_trials", counted)
    sampled(tpe.TPESampler(**TPE_ARGS), 20)
    assert len(calls) == 20 - 5  # once for each trial after the startup trials
    assert calls == sorted(calls)  # a growing history, read afresh for each trial


def test_constant_liar_sees_running_trials_but_not_itself() -> None:
    study = optuna.create_study(direction="maximize",
                                sampler=tpe.TPESampler(constant_liar=True, **TPE_ARGS))
    study.optimize(default_space_objective(3), n_trials=6)
    running = [study.ask() for _ in range(3)]  # three workers' trials, none told yet
    params = [suggest_config(t, DEFAULT_SPACE, epochs=3) for t in running]
    assert len({repr(p.to_dict()) for p in params}) == 3
    for t in running:
        study.tell(t, 0.5)
    assert len(study.trials) == 9


def test_falls_back_to_the_stock_sampler_when_optuna_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tpe, "_PRIVATE_API", False)
    tpe.probe.cache_clear()  # the probe runs once per process
    sampler = tpe.make_tpe(**TPE_ARGS)
    assert type(sampler) is optuna.samplers.TPESampler
    monkeypatch.setattr(tpe, "_PRIVATE_API", True)
    tpe.probe.cache_clear()
    assert type(tpe.make_tpe(**TPE_ARGS)) is tpe.TPESampler


def test_the_probe_passes_here_and_catches_a_drifted_optuna(
        caplog: pytest.LogCaptureFixture) -> None:
    from cifar_search.search.samplers import TPESampler, probe

    assert probe() is None  # the installed Optuna: the shortcut draws what stock TPE draws

    class Renamed(TPESampler):  # as if Optuna had renamed a private method
        def _sample_once(self, *args: object) -> dict[str, object]:
            raise AttributeError("'TPESampler' object has no attribute '_build_parzen_estimator'")

    class Skewed(TPESampler):  # as if a private helper now meant something else
        def _split(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> tuple[
            list[optuna.trial.FrozenTrial], list[optuna.trial.FrozenTrial]
        ]:
            below, above = super()._split(study, trial)
            return above, below

    assert probe(Skewed) == "its draws differ from the stock TPE's"
    # a shortcut that fails while a study runs: that trial and the rest use stock sampling
    study = optuna.create_study(sampler=Renamed(seed=0, n_startup_trials=1))
    with caplog.at_level("WARNING", logger="cifar_search.search.samplers"):
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert sum("stock TPE from now on" in r.getMessage() for r in caplog.records) == 1
