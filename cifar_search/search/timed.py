"""One training that fills a wall-clock budget: ``retrain --time T`` and ``auto``'s final training.

T counts the whole command from its start: loading the data, this config's speed on this device
(from the throughput cache where it has one), the training, both test passes and the exports.
The training gets what is left after the test passes, the exports and a margin
(:func:`~cifar_search.search.auto_plan.final_share`); its epochs are planned from the measured
speed with room to grow (:func:`~cifar_search.search.auto_plan.fill`) and paced to end on time
(:mod:`cifar_search.train.pacing`): a few seconds of measured batches predict a ten-minute
training only to 5-10% on a shared CPU, and whole epochs chosen by hand land up to an epoch off
(on the reference CPU, fast94 x 8 epochs for T = 10 minutes ended at 98-115% of T).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from cifar_search.errors import ConfigError
from cifar_search.search import auto_plan
from cifar_search.search.retrain import RetrainSettings, RetrainTarget
from cifar_search.train.config import TrainConfig
from cifar_search.train.data import CifarArrays, load_cifar10
from cifar_search.train.loader import device_arrays
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.throughput import Rate, RateCache

PROBE_IMAGES = 2048  # training images a speed is measured on (here and in auto)


def probe(arrays: CifarArrays, device: torch.device) -> tuple[Tensor, Tensor]:
    """The first :data:`PROBE_IMAGES` training images and labels on ``device``, to time on."""
    return device_arrays(arrays.train_x[:PROBE_IMAGES], arrays.train_y[:PROBE_IMAGES], device)


@dataclass(frozen=True)
class Paced:
    """The training that fills a share of T: its epochs, the images of each, its deadline."""

    config: TrainConfig  # epochs: the plan's (each epoch ``epoch_images`` images)
    epoch_images: int | None  # None: every epoch sees all training images
    seconds: float  # of training a seed, planned
    deadline: float  # time.monotonic() by which the last seed's training ends
    seeds: int = 1  # trained one after the other, each tested before the next starts
    test_seconds: float = 0.0  # of one seed's test passes, planned

    def settings(self, base: RetrainSettings) -> RetrainSettings:
        return dataclasses.replace(base, epoch_images=self.epoch_images, deadline=self.deadline,
                                   test_seconds=self.test_seconds)

    def source(self, by: str) -> str:
        """Where the epochs came from (``by``: ``auto``, ``--time 600 s``), for metrics.json."""
        each = f" each of {self.seeds} seeds gets" if self.seeds > 1 else " left"
        text = f"{by}: the epochs that fill the {self.seconds:.0f} s of training{each} of T"
        if self.epoch_images is not None:
            text += f" ({self.epoch_images:,} images an epoch)"
        return text + ", paced"


def pace(cfg: TrainConfig, rate: Rate, left_s: float, time_s: float, *, device: str,
         train_images: int, test_images: int, export: bool = True, seeds: int = 1) -> Paced:
    """``cfg`` with the epochs that fill what is left of T at ``rate``, its deadline from now.

    With ``seeds`` K the trainings run one after the other, each followed by its test passes,
    and each gets a K-th of the training time left once all but the last test passes are kept
    out (the last one's, the exports and the margin are kept out by ``final_share``).

    Where T leaves no time to train (``Paced.seconds`` <= 0) the plan is one epoch of one
    batch, due now: ``auto`` resumed at the end of T still tests and exports a model."""
    total = auto_plan.final_share(left_s, time_s, device, test_images, rate.eval, cfg.tta,
                                  export=export)
    test_s = auto_plan.test_seconds(test_images, rate.eval, cfg.tta)
    training = total - (seeds - 1) * test_s
    seconds = training / seeds
    epochs, epoch_images = auto_plan.fill(seconds, rate, train_images, cfg.batch_size)
    return Paced(cfg.replace(epochs=epochs), epoch_images, seconds,
                 time.monotonic() + max(training, 0.0), seeds, test_s)


def repace(cfg: TrainConfig, epoch_images: int | None, rate: Rate, left_s: float,
           time_s: float, *, device: str, test_images: int, export: bool = True) -> Paced:
    """A planned training (``cfg``'s epochs of ``epoch_images``) kept as it is, its deadline
    moved to what is left of T now: a stopped final training resumed goes on as planned, and
    the pacer fits the epochs left into the time left."""
    seconds = auto_plan.final_share(left_s, time_s, device, test_images, rate.eval, cfg.tta,
                                    export=export)
    return Paced(cfg, epoch_images, seconds, time.monotonic() + max(seconds, 0.0))


@dataclass(frozen=True)
class Timed:
    """A retrain planned inside T, ready for :func:`~cifar_search.search.retrain.retrain`."""

    target: RetrainTarget  # with the paced epochs and where they came from
    settings: RetrainSettings  # with the images an epoch and the deadline
    arrays: CifarArrays  # loaded once, for the measurement and the training
    rate: Rate
    measured: bool  # measured now (False: from the cache)
    paced: Paced

    def describe(self, time_s: float, spent_s: float) -> str:
        cfg, p = self.paced.config, self.paced
        seen = p.epoch_images if p.epoch_images is not None else len(self.arrays.train_y)
        what = (f"{p.seeds} seeds one after the other, each {cfg.epochs} epochs of {seen:,} "
                f"images paced to end in {p.seconds:.0f} s and then tested"
                if p.seeds > 1 else f"{cfg.epochs} epochs of {seen:,} images, paced to end in "
                f"{p.seconds:.0f} s, then the test set")
        return (f"{'measured' if self.measured else 'cached'} {self.rate.train:,.0f} training "
                f"images/s here: {what}, and the exports; {time_s - spent_s:.0f} s of the "
                f"{time_s:.0f} s left")


def within(target: RetrainTarget, settings: RetrainSettings, time_s: float, *,
           started: float | None = None, cache: Path | None = None,
           rates: Callable[[TrainConfig], Rate] | None = None) -> Timed:
    """Plan ``target`` to fill ``time_s`` seconds counted from ``started`` (time.monotonic()).

    Loads the data (once: pass ``Timed.arrays`` to ``retrain``) and reads the config's speed
    from the throughput cache or measures it on a few batches; ``rates`` replaces that (tests,
    the API).

    Raises:
        ConfigError: ``time_s`` is not positive, or T leaves no time to train once the test
            passes and the exports are counted.
    """
    started = time.monotonic() if started is None else started
    if time_s <= 0:
        raise ConfigError(f"--time must be > 0 seconds, but got {time_s}.")
    runtime = resolve_runtime(settings.device, settings.precision)
    arrays = load_cifar10(settings.data)
    cfg = target.config
    if rates is not None:
        rate, measured = rates(cfg), False
    else:
        rate, measured = RateCache(cache).rate(cfg, runtime, *probe(arrays, runtime.device))
    left_s = time_s - (time.monotonic() - started)
    paced = pace(cfg, rate, left_s, time_s, device=runtime.device.type,
                 train_images=len(arrays.train_y), test_images=len(arrays.test_y),
                 export=settings.export, seeds=settings.seeds)
    if paced.seconds <= 0:
        need = left_s - paced.seconds * paced.seeds
        seeds = f" {paced.seeds} seeds" if paced.seeds > 1 else ""
        raise ConfigError(f"--time {time_s:.0f} s leaves no time to train{seeds}: "
                          f"{left_s:.0f} s are left, and testing"
                          f"{' and exporting' if settings.export else ''} alone need about "
                          f"{need:.0f} s here.")
    target = dataclasses.replace(target, config=paced.config,
                                 epochs_source=paced.source(f"--time {time_s:.0f} s"))
    return Timed(target, paced.settings(settings), arrays, rate, measured, paced)
