"""Search budgets: how much data and how many epochs one trial gets.

``--budget`` picks one by name (default: ``gpu`` when CUDA is found, else ``cpu``); ``--epochs``,
``--train-subset`` and ``--timeout`` override its fields. A budget's cost ceiling is fixed
(``max_flops``) or, with ``trial_seconds``, derived from this device's measured speed
(:mod:`cifar_search.search.ceiling`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cifar_search.errors import ConfigError
from cifar_search.train.data import VAL_SIZE

if TYPE_CHECKING:
    from cifar_search.train.recipe import DataSpec


@dataclass(frozen=True)
class Budget:
    name: str
    epochs: int  # full epoch budget of a trial; its schedule spans all of it
    train_subset: int | None  # stratified training images per trial (None: the whole split)
    val_size: int = VAL_SIZE  # validation images held out of the 50,000 (fixed, stratified)
    max_flops: float | None = None  # forward FLOPs per image a config may cost (None: any)
    # where set, the ceiling is instead the cost at which a trial trains in this many seconds
    # at fast94's measured speed per FLOP on this device (see cifar_search.search.ceiling)
    trial_seconds: float | None = None
    min_epochs: int = 1  # smallest epoch count the pruner compares trials at
    retrain_epochs: int = 30  # default epoch budget of `retrain` on all 50,000 images
    pruner: str = "hyperband"  # default pruner: Hyperband needs many trials to fill brackets

    def override(
        self, *, epochs: int | None = None, train_subset: int | None = None
    ) -> Budget:
        changes: dict[str, object] = {}
        if epochs is not None:
            changes["epochs"] = epochs
            changes["retrain_epochs"] = max(self.retrain_epochs, epochs)
        if train_subset is not None:
            changes["train_subset"] = train_subset
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def data_spec(self, n_train: int) -> DataSpec:
        """What a trial trains and validates on, of a training set of ``n_train`` images: the
        budget's validation images (at most a tenth of them) and its training subset."""
        from cifar_search.train.recipe import DataSpec

        return DataSpec(val_size=min(self.val_size, n_train // 10),
                        train_subset=self.train_subset)

    def trial_images(self, n_train: int) -> int:
        """Training images a trial sees an epoch, of a training set of ``n_train`` images."""
        left = n_train - self.data_spec(n_train).val_images(n_train)
        return left if self.train_subset is None else min(self.train_subset, left)


BUDGETS: dict[str, Budget] = {
    # One GPU: every config, all 45,000 training images, 16 epochs (pruned from epoch 2 on).
    "gpu": Budget("gpu", epochs=16, train_subset=None, min_epochs=2, retrain_epochs=40),
    # CPU: small nets only, 8,000 images, 6 epochs; few trials, so the median pruner. The
    # ceiling: a trial in 30 s at fast94's speed per FLOP, 91 MFLOPs on the reference 2-core
    # CPU (617 images/s), where the trials near it took 50-70 s (bench/RESULTS.md).
    "cpu": Budget("cpu", epochs=6, train_subset=8000, trial_seconds=30.0, retrain_epochs=15,
                  pruner="median"),
    # Seconds per trial: checks the whole pipeline end to end, results mean little.
    "smoke": Budget(
        "smoke", epochs=2, train_subset=512, val_size=500, max_flops=25e6, retrain_epochs=2,
        pruner="median",
    ),
}


def get_budget(name: str | None, *, cuda: bool) -> Budget:
    """The named budget, or the default for the device (``gpu`` with CUDA, else ``cpu``)."""
    if name is None:
        name = "gpu" if cuda else "cpu"
    try:
        return BUDGETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown budget {name!r} (known: {', '.join(BUDGETS)})."
        ) from None
