"""train.recipe: the one place data is split and loaders and models are built, for every job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_search.errors import ConfigError
from cifar_search.search.budget import BUDGETS
from cifar_search.train.config import TrainConfig
from cifar_search.train.data import load_cifar10, train_val_split
from cifar_search.train.presets import get_preset
from cifar_search.train.recipe import DataSpec, prepare, split
from cifar_search.train.runtime import resolve_runtime

CPU = resolve_runtime("cpu", "fp32")


def _tiny() -> TrainConfig:
    return get_preset("ensta-cnn").config.replace(batch_size=64)


def test_split_is_the_fixed_stratified_split_with_the_test_set_only_on_request(
    synthetic_npz: Path,
) -> None:
    arrays = load_cifar10(synthetic_npz)
    data = split(arrays, DataSpec(), "cpu")
    n = len(arrays.train_y)
    assert data.val_y is not None
    assert (len(data.train_y), len(data.val_y)) == (n - n // 10, n // 10)
    assert data.test_x is None and data.describe()["test_set_used"] is False
    val = train_val_split(arrays.train_y, val_size=n // 10, seed=0).val
    expect = torch.from_numpy(arrays.train_x[val].transpose(0, 3, 1, 2).copy())
    assert data.val_x is not None and torch.equal(data.val_x, expect)
    full = split(arrays, DataSpec(val_size=0, test=True), "cpu")
    assert full.val_x is None and len(full.train_y) == n
    assert full.test_y is not None and len(full.test_y) == len(arrays.test_y)


def test_subset_is_stratified_and_a_users_subset_is_checked(synthetic_npz: Path) -> None:
    arrays = load_cifar10(synthetic_npz)
    data = split(arrays, DataSpec(train_subset=300), "cpu")
    counts = np.bincount(data.train_y.numpy(), minlength=10)
    assert counts.sum() == 300 and counts.min() == counts.max() == 30
    # a budget's subset is a ceiling: larger than the split, the whole split trains
    assert len(split(arrays, DataSpec(train_subset=10**6), "cpu").train_y) == 1800
    with pytest.raises(ConfigError, match="exceeds the training split"):
        DataSpec(train_subset=10**6).check(arrays)


def test_budget_data_spec_caps_validation_at_a_tenth() -> None:
    spec = BUDGETS["cpu"].data_spec(2000)
    assert (spec.val_size, spec.train_subset) == (200, 8000)
    assert BUDGETS["cpu"].data_spec(50_000).val_size == 5000


def test_prepare_seeds_the_model_and_builds_the_jobs_loaders(synthetic_npz: Path) -> None:
    data = split(load_cifar10(synthetic_npz), DataSpec(test=True), "cpu")
    cfg = _tiny()
    a, b = prepare(cfg, data, CPU, seed=3), prepare(cfg, data, CPU, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(),
                                                 b.model.state_dict().values(), strict=True))
    other = prepare(cfg, data, CPU, seed=4).model.state_dict()
    assert not all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(),
                                                     other.values(), strict=True))
    assert len(a.train_loader) == 1800 // 64  # the last partial batch is dropped
    assert a.val_loader is not None and a.val_loader.num_examples == 200
    assert a.test_loader is not None and a.test_loader.num_examples == 500
    x, target = next(iter(a.train_loader))
    assert x.dtype == torch.float32 and x.shape == (64, 3, 32, 32) and len(target) == 64


def test_epoch_images_caps_the_batches_an_epoch(synthetic_npz: Path) -> None:
    data = split(load_cifar10(synthetic_npz), DataSpec(val_size=0), "cpu")
    p = prepare(_tiny(), data, CPU, seed=0, epoch_images=640)
    assert len(p.train_loader) == 10 and p.val_loader is None and p.test_loader is None
