"""Learning-rate schedules: shapes, torch equivalence and the prefix property."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cifar_search.errors import ConfigError
from cifar_search.train.config import OptimConfig
from cifar_search.train.schedules import build_scheduler, lr_factor


def _lrs(cfg: OptimConfig, total_epochs: int, steps_per_epoch: int, steps: int) -> list[float]:
    """Learning rates a LambdaLR-driven optimiser actually uses, step by step."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, total_epochs, steps_per_epoch)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize(("epochs", "spe", "pct"), [(10, 7, 0.25), (3, 50, 0.3), (24, 3, 0.208)])
def test_onecycle_matches_torch(anneal: str, epochs: int, spe: int, pct: float) -> None:
    cfg = OptimConfig(
        schedule="onecycle", lr=0.4, pct_start=pct, div_factor=25, final_div_factor=1e4,
        anneal=anneal,  # type: ignore[arg-type]
    )
    total = epochs * spe
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total, pct_start=pct, anneal_strategy=anneal,
        div_factor=25, final_div_factor=1e4, cycle_momentum=False,
    )
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert _lrs(cfg, epochs, spe, total) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_onecycle_continuous_form_is_close_to_torch() -> None:
    cfg = OptimConfig(schedule="onecycle", pct_start=0.25)
    assert lr_factor(cfg, 0.0, 10) == pytest.approx(1 / 25)
    assert lr_factor(cfg, 2.5, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 10.0, 10) == pytest.approx(1 / 25 / 1e4)


def test_cyclic_is_triangular() -> None:
    cfg = OptimConfig(schedule="cyclic", pct_start=0.25)
    assert lr_factor(cfg, 0, 20) == 0.0
    assert lr_factor(cfg, 2.5, 20) == pytest.approx(0.5)
    assert lr_factor(cfg, 5, 20) == pytest.approx(1.0)
    assert lr_factor(cfg, 12.5, 20) == pytest.approx(0.5)
    assert lr_factor(cfg, 20, 20) == pytest.approx(0.0)
    xs = [i / 10 for i in range(201)]
    ys = [lr_factor(cfg, x, 20) for x in xs]
    peak = ys.index(max(ys))
    assert all(a <= b for a, b in itertools.pairwise(ys[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(ys[peak:]))


def test_warmup_is_linear_from_zero_and_multiplied_in() -> None:
    cfg = OptimConfig(schedule="constant", warmup_epochs=2.0)
    assert lr_factor(cfg, 0, 10) == 0.0
    assert lr_factor(cfg, 1, 10) == pytest.approx(0.5)
    assert lr_factor(cfg, 2, 10) == 1.0
    cos = OptimConfig(schedule="cosine", warmup_epochs=2.0)
    plain = lr_factor(OptimConfig(schedule="cosine"), 1, 10)
    assert lr_factor(cos, 1, 10) == pytest.approx(0.5 * plain)


def test_multistep_milestones_are_fractions_of_the_budget() -> None:
    # ENSTA: x0.5 at epochs 75 and 100 of 125
    cfg = OptimConfig(schedule="multistep", milestones=(0.6, 0.8), gamma=0.5)
    assert lr_factor(cfg, 74.99, 125) == 1.0
    assert lr_factor(cfg, 75, 125) == 0.5
    assert lr_factor(cfg, 99.9, 125) == 0.5
    assert lr_factor(cfg, 100, 125) == 0.25
    assert lr_factor(cfg, 10, 20) == 1.0 and lr_factor(cfg, 12, 20) == 0.5


def test_exponential_steps_per_epoch() -> None:
    cfg = OptimConfig(schedule="exponential", gamma=0.95)
    assert lr_factor(cfg, 0.99, 10) == 1.0
    assert lr_factor(cfg, 1.0, 10) == pytest.approx(0.95)
    assert lr_factor(cfg, 3.5, 10) == pytest.approx(0.95**3)


def test_cosine_goes_to_zero() -> None:
    cfg = OptimConfig(schedule="cosine")
    assert lr_factor(cfg, 0, 8) == 1.0
    assert lr_factor(cfg, 4, 8) == pytest.approx(0.5)
    assert lr_factor(cfg, 8, 8) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(cfg, 9, 8) == pytest.approx(0.0, abs=1e-12)  # past the end: clipped


@pytest.mark.parametrize("schedule", ["constant", "multistep", "exponential", "cosine",
                                      "onecycle", "cyclic"])
def test_prefix_property(schedule: str) -> None:
    """3 epochs of a 10-epoch budget see exactly the first 3 epochs of the full run's LRs."""
    cfg = OptimConfig(schedule=schedule, warmup_epochs=0.5, milestones=(0.2, 0.5),  # type: ignore[arg-type]
                      gamma=0.5)
    spe = 5
    full = _lrs(cfg, 10, spe, 10 * spe)
    short = _lrs(cfg, 10, spe, 3 * spe)
    assert short == full[: 3 * spe]
    assert all(math.isfinite(x) and x >= 0 for x in full)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="total_epochs"):
        lr_factor(OptimConfig(), 0, 0)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]), OptimConfig(), 3, 0)


@pytest.mark.parametrize("schedule", ["cyclic", "onecycle", "cosine", "multistep"])
def test_progress_gives_the_fixed_step_rates_and_ends_on_budget_when_epochs_change(
        schedule: str) -> None:
    from cifar_search.train.schedules import Progress

    cfg = OptimConfig(schedule=schedule, lr=0.4, pct_start=0.25)  # type: ignore[arg-type]

    def rates(batches: list[int]) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        progress = Progress(batches[0])
        sched = build_scheduler(opt, cfg, len(batches), progress)
        out = []
        for epoch, n in enumerate(batches, 1):
            progress.start_epoch(epoch, n)
            for _ in range(n):
                out.append(opt.param_groups[0]["lr"])
                opt.step()
                progress.step()
                sched.step()
        return out

    assert rates([6, 6, 6, 6]) == pytest.approx(_lrs(cfg, 4, 6, 24), rel=1e-9, abs=1e-12)
    paced = rates([6, 3, 2, 4])  # a paced training: fewer batches after the first epoch
    # the last step of the last epoch is where the fixed-step run's last step is in the budget
    assert paced[-1] == pytest.approx(lr_factor(cfg, 4 - 1 / 4, 4, steps_per_epoch=4) * cfg.lr)
    # epoch 2 starts where epoch 1 ended: one epoch into the budget (set on its grid)
    assert paced[6] == pytest.approx(lr_factor(cfg, 1.0, 4, steps_per_epoch=6) * cfg.lr)
