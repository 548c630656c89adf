"""The rung-aware successive-halving pruners decide exactly as Optuna's, with fewer reads."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from cifar_search.search.pruners import RungHalvingPruner, RungHyperbandPruner, _RungSteps


class CountingStorage(optuna.storages.InMemoryStorage):
    """A real in-memory storage that counts full trial reads."""

    def __init__(self) -> None:
        super().__init__()
        self.trial_reads = 0

    def get_trial(self, trial_id: int) -> optuna.trial.FrozenTrial:
        self.trial_reads += 1
        return super().get_trial(trial_id)


def curve_objective(epochs: int, every: int = 1) -> Callable[[optuna.Trial], float]:
    """Synthetic learning curves, reported every ``every`` epochs."""

    def run(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        rng = random.Random(trial.number)
        acc = 0.0
        for epoch in range(every, epochs + 1, every):
            acc = x * (1 - math.exp(-epoch / 3)) + rng.gauss(0, 0.02)
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    return run


def outcomes(study: optuna.Study) -> list[tuple[Any, int | None, dict[int, float]]]:
    return [(t.state, t.last_step, t.intermediate_values) for t in study.trials]


def run_study(pruner: optuna.pruners.BasePruner, epochs: int, every: int,
              storage: str | optuna.storages.BaseStorage | None = None) -> optuna.Study:
    study = optuna.create_study(
        study_name="s", storage=storage, direction="maximize", pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.optimize(curve_objective(epochs, every), n_trials=60)
    return study


@pytest.mark.parametrize("every", [1, 2, 5])
def test_hyperband_prunes_exactly_as_optuna(every: int) -> None:
    stock = run_study(optuna.pruners.HyperbandPruner(1, 27, 3), 27, every)
    rung = run_study(RungHyperbandPruner(1, 27, 3), 27, every)
    assert outcomes(rung) == outcomes(stock)
    assert sum(t.state == TrialState.PRUNED for t in rung.trials) > 10  # it did prune


@pytest.mark.parametrize("every", [1, 3])
def test_successive_halving_prunes_exactly_as_optuna(every: int) -> None:
    stock = run_study(optuna.pruners.SuccessiveHalvingPruner(2, 3), 18, every)
    rung = run_study(RungHalvingPruner(2, 3), 18, every)
    assert outcomes(rung) == outcomes(stock)
    assert sum(t.state == TrialState.PRUNED for t in rung.trials) > 10


@pytest.mark.parametrize(("pruner", "reads"), [
    (optuna.pruners.HyperbandPruner(1, 27, 3), 27),
    (RungHyperbandPruner(1, 27, 3), 4),  # at the rungs 1, 3, 9 and 27 only
])
def test_non_rung_steps_do_not_read_the_trial(pruner: optuna.pruners.BasePruner,
                                              reads: int) -> None:
    storage = CountingStorage()
    study = optuna.create_study(storage=storage, direction="maximize", pruner=pruner)
    trial = study.ask()
    before = storage.trial_reads
    for epoch in range(1, 28):
        trial.report(epoch / 27, epoch)
        assert not trial.should_prune()  # a lone trial is always promoted
    assert storage.trial_reads - before == reads


def test_on_sqlite_the_pruned_trials_match(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / name}.db" for name in ("stock", "rung")]
    stock = run_study(optuna.pruners.HyperbandPruner(1, 9, 3), 9, 1, urls[0])
    rung = run_study(RungHyperbandPruner(1, 9, 3), 9, 1, urls[1])
    assert outcomes(rung) == outcomes(stock)


def test_rung_steps() -> None:
    rungs = _RungSteps(2, 3)
    assert [rungs.next_rung(s) for s in (0, 1, 2, 5, 6, 17, 18)] == [2, 2, 6, 6, 18, 18, 54]
    with pytest.raises(ValueError, match="min_resource must be >= 1, got 0"):
        _RungSteps(0, 3)
    with pytest.raises(ValueError, match="reduction_factor must be >= 2, got 1"):
        _RungSteps(1, 1)


def test_is_still_a_hyperband_pruner_for_samplers() -> None:
    # Optuna gives samplers the trial's bracket only when the pruner is a HyperbandPruner.
    assert isinstance(RungHyperbandPruner(1, 9), optuna.pruners.HyperbandPruner)
