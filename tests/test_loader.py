"""cifar_search.train.loader: device copies, epochs, shuffling, augmentation and memory format."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest
import torch
from datagen import make_images

from cifar_search.errors import DataError
from cifar_search.train import loader as L
from cifar_search.train.augment import BatchAugment
from cifar_search.train.config import AugmentConfig

N = 100


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_images(N, seed=7)
    return x, y.astype(np.int64)


def test_device_arrays_are_nchw_and_cached_per_array(
    arrays: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = arrays
    tx, ty = L.device_arrays(x, y, "cpu")
    assert tx.shape == (N, 3, 32, 32) and tx.dtype == torch.uint8 and tx.is_contiguous()
    assert ty.dtype == torch.int64
    assert np.array_equal(tx.permute(0, 2, 3, 1).numpy(), x)
    again = L.device_arrays(x, y, torch.device("cpu"))
    assert again[0] is tx and again[1] is ty
    assert L.device_arrays(x.copy(), y, "cpu")[0] is not tx


def test_device_copy_leaves_the_cache_with_its_array() -> None:
    x, y = make_images(10, seed=1)
    before = len(L._DEVICE_CACHE)
    L.device_arrays(x, y, "cpu")
    assert len(L._DEVICE_CACHE) == before + 1
    del x, y
    gc.collect()
    assert len(L._DEVICE_CACHE) == before


def test_device_arrays_reject_bad_shapes(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = arrays
    with pytest.raises(DataError, match="uint8"):
        L.device_arrays(x.astype(np.float32), y, "cpu")
    with pytest.raises(DataError, match="labels of shape"):
        L.device_arrays(x, y[:-1], "cpu")


def _labels_seen(loader: L.DeviceLoader) -> list[int]:
    return [int(v) for _, t in loader for v in t]


def test_shuffled_epoch_covers_every_example_once(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = arrays
    tx, _ = L.device_arrays(x, np.zeros(N, np.int64), "cpu")
    ids = torch.arange(N)  # labels that name the example
    loader = L.DeviceLoader(tx, ids, 32, shuffle=True, seed=3)
    assert len(loader) == 4 and loader.num_examples == N
    first = _labels_seen(loader)
    assert sorted(first) == list(range(N)) and first != list(range(N))
    assert _labels_seen(loader) == first  # same epoch, same order
    loader.set_epoch(1)
    second = _labels_seen(loader)
    assert sorted(second) == list(range(N)) and second != first


def test_drop_last_and_sequential_order(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    tx, _ = L.device_arrays(*arrays, "cpu")
    ids = torch.arange(N)
    loader = L.DeviceLoader(tx, ids, 32, drop_last=True)
    assert len(loader) == 3
    assert _labels_seen(loader) == list(range(96))
    images = next(iter(L.DeviceLoader(tx, ids, 8)))[0]
    torch.testing.assert_close(images, tx[:8].float() / 255)


def test_augmented_batches_reproduce_per_epoch(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    tx, ty = L.device_arrays(*arrays, "cpu")
    aug = BatchAugment(AugmentConfig(auto_augment="trivialaugment", cutout=8), input_size=28)
    loader = L.DeviceLoader(tx, ty, 25, augment=aug, shuffle=True, seed=1)
    loader.set_epoch(2)
    run1 = [b for b, _ in loader]
    assert all(b.shape == (25, 3, 28, 28) and b.dtype == torch.float32 for b in run1)
    run2 = [b for b, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(run1, run2, strict=True))
    loader.set_epoch(3)
    assert not torch.equal(next(iter(loader))[0], run1[0])


def test_a_loader_sought_to_a_position_yields_the_rest_of_that_epoch(
        arrays: tuple[np.ndarray, np.ndarray]) -> None:
    """A fresh loader (a new process after a stop) gets the same remaining batches, the same
    random augmentation draws included; the iteration after it starts the epoch again."""
    tx, ty = L.device_arrays(*arrays, "cpu")
    cfg = AugmentConfig(crop_padding=4, cutout=8, mixup_alpha=0.4, mix_prob=0.5)

    def make() -> L.DeviceLoader:
        loader = L.DeviceLoader(tx, ty, 20, augment=BatchAugment(cfg), shuffle=True, seed=5)
        loader.set_epoch(2)
        return loader

    whole = list(make())
    first = make()
    batches = iter(first)
    for _ in range(2):
        next(batches)
    position = first.position()
    assert position["epoch"] == 2 and position["batch"] == 2
    again = make()
    again.seek(position)
    rest = list(again)
    assert len(rest) == 3
    for (a, ta), (b, tb) in zip(rest, whole[2:], strict=True):
        assert torch.equal(a, b) and torch.equal(ta, tb)
    assert torch.equal(next(iter(again))[0], whole[0][0])  # a seek holds for one iteration


def test_seek_refuses_another_epoch_or_a_batch_past_the_end(
        arrays: tuple[np.ndarray, np.ndarray]) -> None:
    tx, ty = L.device_arrays(*arrays, "cpu")
    loader = L.DeviceLoader(tx, ty, 20, shuffle=True)
    loader.set_epoch(3)
    with pytest.raises(DataError, match="batch 1 of epoch 2: the loader is at epoch 3"):
        loader.seek({"epoch": 2, "batch": 1, "aug": None})
    with pytest.raises(DataError, match=r"batch 6 of epoch 3: .* of 5 batches"):
        loader.seek({"epoch": 3, "batch": 6, "aug": None})


def test_alternating_flip_follows_the_epoch(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    tx, ty = L.device_arrays(*arrays, "cpu")
    cfg = AugmentConfig(crop_padding=0, flip="alternating")
    loader = L.DeviceLoader(tx, ty, 50, augment=BatchAugment(cfg))
    even = torch.cat([b for b, _ in loader])
    loader.set_epoch(1)
    odd = torch.cat([b for b, _ in loader])
    torch.testing.assert_close(odd, even.flip(-1))


def test_soft_targets_and_channels_last(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    tx, ty = L.device_arrays(*arrays, "cpu")
    cfg = dataclasses.replace(AugmentConfig(), mixup_alpha=0.2)
    loader = L.DeviceLoader(
        tx, ty, 20, augment=BatchAugment(cfg), memory_format=torch.channels_last
    )
    images, target = next(iter(loader))
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert target.shape == (20, 10)
    torch.testing.assert_close(target.sum(1), torch.ones(20))


def test_loader_rejects_mismatched_inputs(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    tx, ty = L.device_arrays(*arrays, "cpu")
    with pytest.raises(DataError, match="uint8"):
        L.DeviceLoader(tx.float(), ty, 8)
    with pytest.raises(DataError, match="labels must be"):
        L.DeviceLoader(tx, ty[:-1], 8)
    with pytest.raises(DataError, match="batch_size=0"):
        L.DeviceLoader(tx, ty, 0)


def test_max_batches_caps_an_epoch_and_each_epoch_draws_a_new_subset() -> None:
    x, y = torch.zeros(100, 3, 32, 32, dtype=torch.uint8), torch.arange(100)
    loader = L.DeviceLoader(x, y, 10, shuffle=True, drop_last=True, max_batches=3)
    assert len(loader) == 3
    seen = []
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        seen.append(torch.cat([yb for _, yb in loader]))
    assert all(len(s) == 30 and len(set(s.tolist())) == 30 for s in seen)
    assert set(seen[0].tolist()) != set(seen[1].tolist())
    assert len(L.DeviceLoader(x, y, 10, max_batches=50)) == 10
    with pytest.raises(DataError, match="max_batches=0"):
        L.DeviceLoader(x, y, 10, max_batches=0)


@pytest.mark.parametrize(("batch", "drop_last", "max_batches", "images"),
                         [(32, False, None, 100), (32, True, None, 96), (32, False, 2, 64),
                          (32, False, 9, 100)])
def test_epoch_images_is_what_an_epoch_yields(batch: int, drop_last: bool,
                                              max_batches: int | None, images: int) -> None:
    x, y = torch.zeros(100, 3, 32, 32, dtype=torch.uint8), torch.arange(100)
    loader = L.DeviceLoader(x, y, batch, drop_last=drop_last, max_batches=max_batches)
    assert loader.epoch_images == images == sum(len(yb) for _, yb in loader)
