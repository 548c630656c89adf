"""Learning-rate schedules as pure functions of training progress.

:func:`lr_factor` returns the multiplier of ``cfg.lr`` after ``progress_epochs`` epochs of a
``total_epochs`` budget. The schedule always spans the *full* budget (``TrainConfig.epochs``),
even when training stops earlier, so a trial cut short after 3 of 10 epochs has seen exactly the
learning rates of the first 3 epochs of a full run (Zela et al., 2018).

The trainer wraps it in :class:`torch.optim.lr_scheduler.LambdaLR` stepped once per batch
(:func:`build_scheduler`), so ``progress_epochs = step / steps_per_epoch``; or, where the batches
an epoch change between epochs (a paced training, :mod:`cifar_search.train.pacing`), it reads a
:class:`Progress`: epochs done plus the fraction of the current epoch, so the schedule still
ends exactly at the budget.

Shapes (``p`` = progress in epochs, ``T`` = total epochs):

* ``constant``: 1.
* ``multistep``: ``gamma ** k``, ``k`` = milestones already passed; milestones are fractions of
  the budget, so ``(0.5, 0.75)`` of 100 epochs drops at epochs 50 and 75 (mid-epoch when the
  fraction does not fall on an epoch boundary).
* ``exponential``: ``gamma ** floor(p)``: stepped once per *epoch*, as
  ``torch.optim.lr_scheduler.ExponentialLR`` stepped per epoch (the RDFIA recipe).
* ``cosine``: ``(1 + cos(pi p / T)) / 2``, from 1 down to 0.
* ``onecycle``: ``OneCycleLR``: from ``1 / div_factor`` up to 1 over ``pct_start`` of the budget,
  then down to ``1 / (div_factor * final_div_factor)``, both phases ``cos`` or ``linear``. Given
  ``steps_per_epoch`` it reproduces ``torch.optim.lr_scheduler.OneCycleLR`` step for step (its
  discrete grid ends phase one at step ``pct_start * total_steps - 1``). Momentum is not cycled.
* ``cyclic``: triangular (DavidNet): linear from 0 up to 1 at ``pct_start`` of the budget, then
  linear down to 0 at the end.

A linear warm-up from 0 to 1 over ``cfg.warmup_epochs`` (inside the budget) is multiplied in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from cifar_search.errors import ConfigError
from cifar_search.train.config import OptimConfig

_EPS = 1e-9  # progress tolerance, so that a milestone at 0.6 * 125 = 74.99999... fires at 75


def lr_factor(
    cfg: OptimConfig,
    progress_epochs: float,
    total_epochs: int,
    *,
    steps_per_epoch: int | None = None,
) -> float:
    """Multiplier of ``cfg.lr`` after ``progress_epochs`` epochs of a ``total_epochs`` budget.

    Args:
        cfg: The optimisation section of the config (schedule and its parameters).
        progress_epochs: Epochs done so far, fractional (``step / steps_per_epoch``); clipped to
            ``[0, total_epochs]``.
        total_epochs: The full budget the schedule spans (``TrainConfig.epochs``).
        steps_per_epoch: Only used by ``onecycle``, to land on ``OneCycleLR``'s discrete grid.

    Returns:
        The factor, warm-up included.

    Example:
        >>> from cifar_search.train.config import OptimConfig
        >>> lr_factor(OptimConfig(schedule="cyclic", pct_start=0.25), 1.0, 4)
        1.0
    """
    if total_epochs < 1:
        raise ConfigError(f"total_epochs must be >= 1, but got {total_epochs=}.")
    p = min(max(float(progress_epochs), 0.0), float(total_epochs))
    shape = _SHAPES.get(cfg.schedule)
    if shape is None:
        raise ConfigError(f"unknown schedule {cfg.schedule!r} (known: {', '.join(_SHAPES)}).")
    if cfg.schedule == "onecycle" and steps_per_epoch:
        factor = _onecycle_steps(cfg, round(p * steps_per_epoch), total_epochs * steps_per_epoch)
    else:
        factor = shape(cfg, p, total_epochs)
    return factor * _warmup(cfg, p)


class Progress:
    """Where a training is in its budget, in epochs: ``start_epoch`` before each epoch with its
    batch count, ``step`` after each optimiser step. :attr:`epochs` is ``epoch - 1 + steps /
    batches``, so an epoch of fewer (or more) batches than the last still moves the schedule by
    one epoch. With the same batch count every epoch it equals ``step / steps_per_epoch``."""

    def __init__(self, batches: int) -> None:
        if batches < 1:
            raise ConfigError(f"an epoch needs >= 1 batch, but got {batches=}.")
        self.done, self.batches, self.steps = 0, batches, 0

    def start_epoch(self, epoch: int, batches: int) -> None:
        if batches < 1:
            raise ConfigError(f"an epoch needs >= 1 batch, but got {batches=} (epoch {epoch}).")
        self.done, self.batches, self.steps = epoch - 1, batches, 0

    def step(self) -> None:
        self.steps += 1

    @property
    def epochs(self) -> float:
        return self.done + self.steps / self.batches


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_epochs: int,
    steps_per_epoch: int | Progress,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A :class:`~torch.optim.lr_scheduler.LambdaLR` over :func:`lr_factor`, stepped per batch.

    The optimiser's groups must hold ``cfg.lr`` (what
    :func:`~cifar_search.train.optim.build_optimizer` sets); call ``scheduler.step()`` after every
    ``optimizer.step()``. Given a :class:`Progress` instead of a fixed ``steps_per_epoch``, the
    factor is read from it (advance it before ``scheduler.step()``).
    """
    if isinstance(steps_per_epoch, Progress):
        progress = steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: lr_factor(
            cfg, progress.epochs, total_epochs, steps_per_epoch=progress.batches))
    if steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch must be >= 1, but got {steps_per_epoch=}.")

    def factor(step: int) -> float:
        return lr_factor(
            cfg, step / steps_per_epoch, total_epochs, steps_per_epoch=steps_per_epoch
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _warmup(cfg: OptimConfig, p: float) -> float:
    if cfg.warmup_epochs <= 0:
        return 1.0
    return min(1.0, p / cfg.warmup_epochs)


def _constant(cfg: OptimConfig, p: float, total: int) -> float:
    return 1.0


def _multistep(cfg: OptimConfig, p: float, total: int) -> float:
    passed = sum(1 for m in cfg.milestones if p + _EPS >= m * total)
    return float(cfg.gamma**passed)


def _exponential(cfg: OptimConfig, p: float, total: int) -> float:
    return float(cfg.gamma ** math.floor(p + _EPS))


def _cosine(cfg: OptimConfig, p: float, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * p / total))


def _cyclic(cfg: OptimConfig, p: float, total: int) -> float:
    peak = cfg.pct_start * total
    if p <= peak:
        return p / peak
    return max(0.0, (total - p) / (total - peak))


def _anneal(cfg: OptimConfig, start: float, end: float, pct: float) -> float:
    if cfg.anneal == "linear":
        return start + (end - start) * pct
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def _onecycle(cfg: OptimConfig, p: float, total: int) -> float:
    """Continuous OneCycle: the limit of :func:`_onecycle_steps` for many steps per epoch."""
    initial = 1.0 / cfg.div_factor
    final = initial / cfg.final_div_factor
    peak = cfg.pct_start * total
    if p <= peak:
        return _anneal(cfg, initial, 1.0, p / peak)
    return _anneal(cfg, 1.0, final, (p - peak) / (total - peak))


def _onecycle_steps(cfg: OptimConfig, step: int, total_steps: int) -> float:
    """``OneCycleLR``'s two-phase formula on its discrete step grid (step 0 .. total - 1)."""
    initial = 1.0 / cfg.div_factor
    final = initial / cfg.final_div_factor
    peak_step = float(cfg.pct_start * total_steps) - 1.0
    last_step = float(total_steps - 1)
    if step <= peak_step:
        return _anneal(cfg, initial, 1.0, step / peak_step if peak_step > 0 else 1.0)
    span = last_step - peak_step
    return _anneal(cfg, 1.0, final, min(1.0, (step - peak_step) / span) if span > 0 else 1.0)


_SHAPES: dict[str, Callable[[OptimConfig, float, int], float]] = {
    "constant": _constant,
    "multistep": _multistep,
    "exponential": _exponential,
    "cosine": _cosine,
    "onecycle": _onecycle,
    "cyclic": _cyclic,
}
