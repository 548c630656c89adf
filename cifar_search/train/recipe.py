"""The one recipe every training follows: arrays -> split -> subset -> device tensors ->
augmented loaders -> seeded model.

A search trial (:mod:`cifar_search.search.objective`), an ``auto`` rung, each seed of a
retraining, ``cifar-search train``, ``lr-find``, the throughput probe and the bench scripts all
build their data and model here, so that what a trial trained on is what a retraining trains
on, and nothing else splits data or builds loaders::

    data = split(load_cifar10(path), DataSpec(train_subset=10_000), runtime.device)
    prepared = prepare(cfg, data, runtime, seed=0)
    result = train(prepared.model, cfg, prepared.train_loader, prepared.val_loader, runtime,
                   seed=0)

The split is the fixed, stratified one of :func:`~cifar_search.train.data.train_val_split`
(seed 0), so every trial of every study validates on the same images. The test set is on the
device only when a :class:`DataSpec` asks for it (``test=True``): ``retrain`` does, once per
seed after the last epoch; the search never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cifar_search.train.augment import BatchAugment
from cifar_search.train.config import TrainConfig
from cifar_search.train.data import (
    VAL_SIZE,
    CifarArrays,
    check_train_subset,
    stratified_subset,
    train_val_split,
)
from cifar_search.train.evaluation import EVAL_BATCH
from cifar_search.train.loader import DeviceLoader, device_arrays
from cifar_search.train.models import create_model
from cifar_search.train.runtime import Runtime, seed_everything


@dataclass(frozen=True)
class DataSpec:
    """Which images a training sees."""

    # validation images held out of the training set (stratified, fixed); None: VAL_SIZE, or
    # a tenth of a smaller set; 0: none, train on every training image
    val_size: int | None = None
    train_subset: int | None = None  # stratified training images of the train split; None: all
    test: bool = False  # also put the test set on the device (retrain only)

    def val_images(self, n: int) -> int:
        """Validation images of a training set of ``n`` images."""
        return min(VAL_SIZE, n // 10) if self.val_size is None else self.val_size

    def check(self, arrays: CifarArrays) -> None:
        """Raise :class:`~cifar_search.errors.ConfigError` where a user's ``train_subset`` does
        not fit the data (below one image a class, above the train split)."""
        n = len(arrays.train_y)
        check_train_subset(self.train_subset, n - self.val_images(n), arrays.source)


@dataclass(frozen=True, eq=False)
class SplitData:
    """Device-resident uint8 NCHW images and int64 labels of each part of the data."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    source: str  # the file or folder the arrays were read from

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "train_size": len(self.train_y),
                "val_size": 0 if self.val_y is None else len(self.val_y),
                "test_set_used": self.test_y is not None}


def split(arrays: CifarArrays, spec: DataSpec, device: torch.device | str) -> SplitData:
    """The fixed train/val split of ``arrays`` (seed 0), the stratified subset of its train
    part (all of it where ``train_subset`` is as large), on ``device``. The arrays are copied
    to the device once per process (:func:`~cifar_search.train.loader.device_arrays`) and the
    parts indexed from that copy. A user's subset is checked first (:meth:`DataSpec.check`)."""
    device = torch.device(device)
    x, y = device_arrays(arrays.train_x, arrays.train_y, device)
    n_val = spec.val_images(len(arrays.train_y))
    parts = train_val_split(arrays.train_y, val_size=n_val, seed=0)
    train_idx = parts.train
    if spec.train_subset is not None and spec.train_subset < len(train_idx):
        train_idx = stratified_subset(train_idx, arrays.train_y, spec.train_subset, seed=0)
    val_x = val_y = test_x = test_y = None
    if n_val > 0:
        v = torch.as_tensor(np.asarray(parts.val), device=device)
        val_x, val_y = x[v], y[v]
    if len(train_idx) < len(y):
        t = torch.as_tensor(np.asarray(train_idx), device=device)
        x, y = x[t], y[t]
    if spec.test:
        test_x, test_y = device_arrays(arrays.test_x, arrays.test_y, device)
    return SplitData(x, y, val_x, val_y, test_x, test_y, arrays.source)


def train_loader(
    cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, runtime: Runtime, *, seed: int,
    max_batches: int | None = None,
) -> DeviceLoader:
    """Shuffled batches of ``cfg.batch_size`` with ``cfg``'s augmentation; a last partial
    batch is dropped unless it is the only one. ``max_batches`` caps an epoch (each epoch a
    fresh random subset)."""
    return DeviceLoader(x, y, cfg.batch_size, shuffle=True, drop_last=len(y) > cfg.batch_size,
                        augment=BatchAugment(cfg.augment, input_size=cfg.model.input_size),
                        seed=seed, memory_format=runtime.memory_format,
                        max_batches=max_batches)


def eval_loader(
    x: torch.Tensor, y: torch.Tensor, runtime: Runtime, batch_size: int = EVAL_BATCH
) -> DeviceLoader:
    """Plain 32x32 batches in order, for validation and test (no augmentation)."""
    return DeviceLoader(x, y, batch_size, memory_format=runtime.memory_format)


@dataclass(eq=False)
class Prepared:
    """A fresh model and the loaders of one training."""

    model: nn.Module
    train_loader: DeviceLoader
    val_loader: DeviceLoader | None  # None where the data has no validation part
    test_loader: DeviceLoader | None  # None unless the data holds the test set


def prepare(
    cfg: TrainConfig, data: SplitData, runtime: Runtime, *, seed: int,
    epoch_images: int | None = None,
) -> Prepared:
    """The loaders of ``data`` for ``cfg``, then the model, initialised from ``seed``.

    ``epoch_images`` caps the training images an epoch (whole batches; each epoch a new random
    subset): a budget that buys a fractional number of epochs trains that many images in all.
    """
    max_batches = None if epoch_images is None else max(epoch_images // cfg.batch_size, 1)
    loader = train_loader(cfg, data.train_x, data.train_y, runtime, seed=seed,
                          max_batches=max_batches)
    val = None if data.val_x is None or data.val_y is None else eval_loader(
        data.val_x, data.val_y, runtime)
    test = None if data.test_x is None or data.test_y is None else eval_loader(
        data.test_x, data.test_y, runtime)
    seed_everything(seed)
    return Prepared(create_model(cfg.model), loader, val, test)
