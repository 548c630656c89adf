"""How ``auto`` spends a wall-clock budget T: the plan, from measured throughput.

Everything here is arithmetic on measured :class:`~cifar_search.train.throughput.Rate`\\ s; nothing
trains. The rules, after AutoGluon's ``time_limit`` and Hyperband / BOHB:

* **The final training comes first.** Its share is what is left of T after the search, minus
  the test evaluation (with the config's test-time augmentation), the exports and a margin.
  Every candidate is scaled to fit it: its epochs are the ones that fill the share at its
  measured speed; a candidate that would get fewer than ``min(its epochs, MIN_FINAL_EPOCHS)``
  is made narrower, and one with more than ``MAX_EPOCH_SCALE`` times its own epochs wider.
* **A search only where it can pay.** The top rung must train each finalist for at least the
  strongest preset's own recipe (its epochs over the 45,000-image split, in time): below that a
  rung's ranking says little about the final training (on the reference CPU at T = 45 minutes
  the lowest rung gave fast94 4-10 optimiser steps and ranked it at chance, and the rank
  correlation between the two lowest rungs was 0.31-0.54), while the search's share is taken
  from the final training of a recipe that gains with every epoch. With :data:`SEARCH_SHARE`
  of T and three rungs that is about twenty trainings of the strongest preset: hours of a
  2-core CPU, minutes of a GPU. Below it the plan trains the strongest preset scaled to fill T.
* **Rungs are equal-time, complete trainings.** Rung r trains each candidate on ``n_r`` images
  of the 45,000 / 5,000 split for as many epochs as ``tau_r`` seconds buy at its speed (a slow
  model gets fewer epochs, exactly as in the final training), its schedule spanning them, paced
  to end on ``tau_r`` where the machine runs slower than the rate said; images and time grow
  by :data:`ETA` a rung, and the top third goes on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from cifar_search.errors import ConfigError
from cifar_search.search.progress import duration
from cifar_search.train.config import TrainConfig
from cifar_search.train.throughput import Rate, tta_views

# Presets by expected accuracy per unit of compute at short budgets (docs/SEEDS.md: fast94 94%
# in 10 epochs of a 2M-param net; DavidNet 94% in 20-24 epochs of 6.5M; the custom ResNet 90% in
# 24; ResNet-18 ~93% in 200; ...): the order in which the no-search plan and ties choose.
PRIOR = ("fast94", "davidnet", "era-custom-resnet", "resnet18", "rdfia-alexnet", "ensta-cnn",
         "resnet34", "resnet50", "shake-shake-26")
SEARCH_SHARE = 0.3  # of the time left, when a search pays
ETA = 3  # successive halving: images, seconds and survivors change by this factor a rung
N_RUNGS = 3  # rungs on split / ETA^2, split / ETA and split images (5,000 to 45,000)
MIN_FINAL_EPOCHS = 8  # a candidate is narrowed rather than trained for fewer epochs
MAX_EPOCH_SCALE = 3  # ... and widened rather than trained for more than 3x its own epochs
# one torch.export + ONNX + their checks, fast94: 4.5-6 s a pair on the reference CPU (the run
# folder's file times, three runs; 15 s before, which left 20-30 s of T unused); GPU: a guess
EXPORT_SECONDS = {"cpu": 6.0, "cuda": 6.0}
# of T kept back: the model folder's writing and the test pass's speed (the final training is
# paced, so the training rate's error no longer needs a margin)
MARGIN = 0.01
VAL_IMAGES = 5000  # validation images a rung trial is evaluated on (single view)
# epochs planned beyond what the final share's images need, their images an epoch cut to
# match: the pacer's room to give a faster machine more images (a shared 2-core CPU runs 5-10%
# off its measured speed, bench/RESULTS.md)
HEADROOM = 0.1

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``600``, ``90s``, ``10m``, ``2h``, ``1h30m`` or ``1.5h``.

    Raises:
        ConfigError: anything else, or a duration that is not positive.
    """
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        seconds = float(t)
    elif re.fullmatch(r"(\d+(\.\d+)?[smhd])+", t):
        seconds = sum(float(n) * _UNITS[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)([smhd])", t))
    else:
        raise ConfigError(f"--time must be a duration like 600, 90s, 10m, 2h or 1h30m, but got "
                          f"{text!r}.")
    if seconds <= 0:
        raise ConfigError(f"--time must be > 0, but got {text!r}.")
    return seconds


@dataclass(frozen=True)
class Candidate:
    """A config that may become the final training: ``config.epochs`` fills the final share."""

    name: str  # "fast94", "fast94@w48" (resized), "fast94~2" (a variant of the incumbent)
    config: TrainConfig
    rate: Rate
    preset: str | None  # the preset it was scaled from, None for a variant

    def rung_epochs(self, rung: Rung) -> int:
        """Epochs ``rung.seconds`` buy at this candidate's speed on ``rung.images`` (>= 1)."""
        return max(1, math.floor(rung.seconds * self.rate.train / rung.images))


@dataclass(frozen=True)
class Rung:
    images: int  # training images of the 45,000 split
    seconds: float  # training time of one trial (its epochs follow from each candidate's speed)
    trials: int  # candidates trained at this rung


@dataclass(frozen=True)
class Plan:
    time_s: float  # T
    left_s: float  # what was left of T when the plan was made
    search_s: float  # planned for the search (0: none)
    final_s: float  # planned for the final training, test evaluation and exports
    rungs: tuple[Rung, ...] = ()
    reason: str = ""  # why this split, for humans
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"time {self.time_s:.0f} s, {self.left_s:.0f} s left: search {self.search_s:.0f}"
                 f" s, final training {self.final_s:.0f} s ({self.reason})"]
        for i, r in enumerate(self.rungs):
            lines.append(f"  rung {i}: {r.trials} trial(s) x {r.seconds:.0f} s of training on "
                         f"{r.images:,} images")
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {"time_s": self.time_s, "left_s": self.left_s, "search_s": self.search_s,
                "final_s": self.final_s, "reason": self.reason, "notes": self.notes,
                "rungs": [r.__dict__ for r in self.rungs]}


def final_share(left_s: float, time_s: float, device: str, test_images: int,
                eval_rate: float, tta: str, *, export: bool = True) -> float:
    """Seconds of training the final run gets out of ``left_s`` with no search: what is left
    after the test set (once with the config's TTA, once with one view), the exports (the plain
    model, and the TTA model where there is one; none without ``export``) and the margin."""
    exports = (EXPORT_SECONDS.get(device, EXPORT_SECONDS["cpu"]) * (2 if tta != "none" else 1)
               if export else 0.0)
    return left_s - exports - MARGIN * time_s - test_seconds(test_images, eval_rate, tta)


def test_seconds(test_images: int, eval_rate: float, tta: str) -> float:
    """Seconds of one trained model's test passes: with the config's TTA, and with one view
    where there is TTA."""
    views = tta_views(tta) + (1 if tta != "none" else 0)
    return test_images * views / eval_rate


def epochs_for(seconds: float, rate: Rate, images: int) -> int:
    """Whole epochs of ``images`` that ``seconds`` of training buy at ``rate`` (may be 0)."""
    return max(0, math.floor(seconds * rate.train / images))


def fill(seconds: float, rate: Rate, images: int, batch_size: int) -> tuple[int, int | None]:
    """``(epochs, epoch_images)`` whose training fills ``seconds`` at ``rate``, with room to
    grow: :data:`HEADROOM` more epochs than the images need, each of a random subset of
    ``epoch_images`` (whole batches), so the pacer (``cifar_search.train.pacing``), which may
    give an epoch anything from one batch to all images, can follow a machine that runs faster
    than measured as well as one that runs slower. Whole epochs of all images could only shrink:
    two 45-minute runs that trained faster than their rates ended 150 s early.
    ``epoch_images`` is None when every epoch sees all images (under one epoch's time: one
    epoch of a subset)."""
    exact = max(seconds, 0.0) * rate.train / images  # epochs, fractional
    epochs = max(1, math.ceil(exact * (1 + HEADROOM) - 1e-9))
    batches = max(1, math.floor(exact * images / epochs / batch_size))
    epoch_images = batches * batch_size
    return epochs, None if epoch_images >= images else epoch_images


def plan(left_s: float, time_s: float, reference: Candidate, *, device: str,
         train_images: int, split_images: int, test_images: int, n_candidates: int) -> Plan:
    """Split what is left of T between the search and the final training.

    Args:
        left_s: seconds of T still left (data loaded, rates measured).
        time_s: T.
        reference: the strongest preset with its own epochs, measured.
        device: ``cpu`` or ``cuda`` (the export time).
        train_images: images of the final training (all training images).
        split_images: training images of the search's split (the rest is validation).
        test_images: images of the test evaluation.
        n_candidates: configs the lowest rung should see (presets and variants).
    """
    ref = reference.config
    train_only = final_share(left_s, time_s, device, test_images, reference.rate.eval, ref.tta)
    if train_only <= 0:
        raise ConfigError(f"--time {time_s:.0f} s leaves no time to train: evaluating and "
                          f"exporting alone need about {left_s - train_only:.0f} s here.")
    ref_run = reference.rate.train_seconds(train_images, ref.epochs)
    runs = train_only / ref_run
    held = (f"the time left holds {runs:.1f} trainings of {reference.name} ({ref_run:.0f} s "
            "each here)")
    if n_candidates < 2:
        return Plan(time_s, left_s, 0.0, left_s, (), f"no search: one candidate; {held}")
    search_s = SEARCH_SHARE * left_s
    rungs = _rungs(search_s, n_candidates, split_images, reference)
    if not rungs:
        need = min_search_seconds(n_candidates, split_images, reference) / SEARCH_SHARE
        return Plan(time_s, left_s, 0.0, left_s, (),
                    f"no search: {held}; a search whose top rung trains its finalists for "
                    f"{reference.name}'s own {ref.epochs} epochs needs T of about "
                    f"{duration(need + time_s - left_s)} here")
    return Plan(time_s, left_s, search_s, left_s - search_s, rungs,
                f"{held}; {SEARCH_SHARE:.0%} goes to successive halving")


def _ladder(k0: int, split_images: int) -> tuple[list[int], list[int]]:
    """Images and trials of the rungs: ``split / ETA^2``, ``split / ETA`` and all ``split``
    images (5,000, 15,000 and 45,000 for CIFAR-10), rung r holding ``k0 / ETA^r`` trials."""
    images = [max(1, split_images // ETA ** (N_RUNGS - 1 - r)) for r in range(N_RUNGS)]
    return images, [max(1, round(k0 / ETA**r)) for r in range(N_RUNGS)]


def min_search_seconds(k0: int, split_images: int, ref: Candidate) -> float:
    """The least search time the rungs can do with (inf: fewer than two candidates): each rung
    gets the same share, enough that the lowest gives the reference one epoch and the top one
    gives each of its trials the reference's own recipe (its epochs over the split), both plus
    the validation pass. Fewer rungs would not be cheaper: the top rung would hold more trials
    of the same length."""
    images, k = _ladder(k0, split_images)
    if k[0] < 2:
        return math.inf
    eval_s = ref.rate.eval_seconds(VAL_IMAGES)
    own = ref.rate.train_seconds(split_images, ref.config.epochs)
    return N_RUNGS * max(k[0] * (images[0] / ref.rate.train + eval_s), k[-1] * (own + eval_s))


def _rungs(search_s: float, k0: int, split_images: int, ref: Candidate) -> tuple[Rung, ...]:
    """Equal-share rungs (:func:`_ladder`), each ``ETA`` times longer a trial than the rung
    below, or none where ``search_s`` is under :func:`min_search_seconds`."""
    if search_s < min_search_seconds(k0, split_images, ref):
        return ()
    images, k = _ladder(k0, split_images)
    per_rung, eval_s = search_s / N_RUNGS, ref.rate.eval_seconds(VAL_IMAGES)
    return tuple(Rung(images[r], per_rung / k[r] - eval_s, k[r]) for r in range(N_RUNGS))


def rank_correlation(pairs: list[tuple[float, float]]) -> float | None:
    """Spearman's rho between two fidelities' scores of the same configs (None under 3, or
    where either side scored them all alike: no ranking to correlate)."""
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return None  # constant input: scipy would warn and return nan
    from scipy.stats import spearmanr

    rho = spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic
    return None if rho is None or math.isnan(float(rho)) else float(rho)
