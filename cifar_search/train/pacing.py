"""A training that ends on time: the epochs left are fitted into what is left of a time budget.

``auto`` plans its final training from a few seconds of measured throughput, but a 2-core CPU
shared with anything else runs an epoch 5-10% faster or slower than that measurement, and over
a 10-minute training that is the whole tolerance of a wall-clock budget. :class:`Pacer` closes
the loop: after every epoch it divides the seconds left by the epochs left and sets the next
epochs' batches (``DeviceLoader.max_batches``, a fresh random subset each epoch) from this
training's own seconds a batch so far. The epoch count never changes and the schedule follows
the epochs' fractions (:class:`~cifar_search.train.schedules.Progress`), so a paced training
still ends its learning rate, lookahead and whitening phases where the recipe says; only the
images an epoch move, by as much as the machine's speed does.

Nothing here knows of searches or Optuna: a caller gives a loader, the epoch budget and
seconds, and calls :meth:`Pacer.after_epoch` from the trainer's ``on_epoch_end``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol


class PacedLoader(Protocol):
    """What a paced loader needs (``DeviceLoader``): a settable cap on the batches an epoch and
    the batches of a whole epoch, the cap's upper bound."""

    max_batches: int | None

    @property
    def all_batches(self) -> int: ...


class Pacer:
    """Sets ``loader.max_batches`` after each epoch so that the training ends ``seconds`` after
    the pacer was made.

    Args:
        loader: The training loader. The first epoch runs with the cap it has; a faster
            machine may then get up to whole epochs of every image (``all_batches``), a slower
            one down to one batch an epoch.
        epochs: The epoch budget (``TrainConfig.epochs``).
        seconds: Wall seconds from now to the end of the last epoch.
        clock: Seconds, monotonic (tests pass their own).
    """

    def __init__(self, loader: PacedLoader, epochs: int, seconds: float, *,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.loader, self.epochs, self.seconds = loader, epochs, seconds
        self.full = loader.all_batches
        self._now = clock
        self.start = self._now()
        self.train_s = 0.0  # seconds of the epochs so far (what a batch costs)
        self.batches_done = 0  # the images of each epoch are the caller's record

    def after_epoch(self, epoch: int, seconds: float, batches: int) -> int | None:
        """Record epoch ``epoch`` (``seconds`` long, ``batches`` batches) and set the cap of the
        epochs after it; returns the cap (None: whole epochs, or nothing left to pace)."""
        self.train_s += seconds
        self.batches_done += batches
        left_epochs = self.epochs - epoch
        if left_epochs <= 0 or self.batches_done == 0:
            return self.loader.max_batches
        per_batch = self.train_s / self.batches_done
        left_s = self.seconds - (self._now() - self.start)
        fit = math.floor(left_s / left_epochs / per_batch) if per_batch > 0 else self.full
        cap = min(max(fit, 1), self.full)
        self.loader.max_batches = None if cap >= self.full else cap
        return self.loader.max_batches
