"""Augmented images per second: DeviceLoader + BatchAugment vs a torchvision DataLoader.

Both sides apply the same augmentations: torchvision.transforms.v2 on PIL images in a
``DataLoader`` (``num_workers`` 0 and 2), and :class:`~cifar_search.train.augment.BatchAugment` on
the device-resident uint8 batch. Throughput is measured over an epoch of N images from its first
batch on (worker start-up excluded), after a warm-up epoch; the best of ``--repeat`` epochs is
kept, so load from other processes on a shared machine distorts it less. Prints a markdown
table to stdout.

``--epoch-preset NAME`` adds a second table: one training epoch of that preset through the real
:func:`cifar_search.train.trainer.train`, fed once by ``DeviceLoader`` + ``BatchAugment`` and once
by a ``DataLoader`` of PIL images with the same augmentations (torchvision v2), so the gain is
measured where it matters, in epoch time.

Usage:
    python bench/bench_loader.py [--data PATH] [--n 10000] [--batch-size 512] [--device cpu]
                                 [--repeat 3] [--epoch-preset rdfia-alexnet]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from cifar_search.train.config import CIFAR10_MEAN, AugmentConfig
from cifar_search.train.data import load_cifar10
from cifar_search.train.loader import device_arrays

DEFAULT_DATA = Path("/work/data/cifar10.npz")


def recipes() -> dict[str, tuple[AugmentConfig, v2.Compose]]:
    """Name -> (our config, the same augmentations as torchvision v2 on PIL)."""
    crop_flip = [v2.RandomCrop(32, padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip()]
    to_float = [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    return {
        "crop+flip": (AugmentConfig(), v2.Compose(crop_flip + to_float)),
        "autoaugment+crop+flip+erasing": (
            AugmentConfig(auto_augment="autoaugment", random_erasing=0.5),
            v2.Compose(
                [v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10), *crop_flip, *to_float,
                 v2.RandomErasing(p=0.5, value=list(CIFAR10_MEAN))]
            ),
        ),
    }


class PilDataset(Dataset[tuple[torch.Tensor, int]]):
    """The images as PIL, decoded once (so the baseline pays no file decoding)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Callable[..., torch.Tensor]):
        self.images = [Image.fromarray(a) for a in x]
        self.labels = [int(v) for v in y]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), self.labels[i]


def images_per_s(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: str) -> float:
    """Images per second over an epoch, timed from the first batch on."""
    it = iter(batches)
    next(it)
    start, n = time.perf_counter(), 0
    for x, _ in it:
        n += len(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def ours(
    x: np.ndarray, y: np.ndarray, cfg: AugmentConfig, batch: int, device: str, repeat: int
) -> float:
    from cifar_search.train.config import TrainConfig
    from cifar_search.train.recipe import train_loader
    from cifar_search.train.runtime import resolve_runtime

    tx, ty = device_arrays(x, y, device)
    recipe = TrainConfig().replace(augment=cfg, batch_size=batch)
    loader = train_loader(recipe, tx, ty, resolve_runtime(device, "fp32", channels_last=False),
                          seed=0)
    images_per_s(loader, device)  # warm-up epoch (allocator, first-call costs)
    best = 0.0
    for epoch in range(1, repeat + 1):
        loader.set_epoch(epoch)
        best = max(best, images_per_s(loader, device))
    return best


def theirs(dataset: PilDataset, batch: int, workers: int, repeat: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    images_per_s(loader, "cpu")  # warm-up epoch
    return max(images_per_s(loader, "cpu") for _ in range(repeat))


class PilLoader:
    """A torchvision ``DataLoader`` in the shape the trainer takes (``set_epoch``, ``len``)."""

    def __init__(self, dataset: PilDataset, batch: int, workers: int) -> None:
        self.loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                 num_workers=workers, persistent_workers=workers > 0)

    def set_epoch(self, epoch: int) -> None:
        pass  # the DataLoader reshuffles by itself

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.loader)


def pil_transform(cfg: AugmentConfig, input_size: int) -> v2.Compose:
    """torchvision v2 on PIL for what the presets of this benchmark use: crop (padded, or a
    random ``input_size`` crop without padding) and flip."""
    crop = (v2.RandomCrop(input_size) if cfg.crop_padding == 0
            else v2.RandomCrop(32, padding=cfg.crop_padding, padding_mode=cfg.padding_mode))
    ops = [crop] + ([v2.RandomHorizontalFlip()] if cfg.flip != "none" else [])
    return v2.Compose([*ops, v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])


def epoch_seconds(preset: str, x: np.ndarray, y: np.ndarray, device: str) -> list[str]:
    """One timed epoch (after a warm-up epoch) of ``preset`` fed both ways."""
    import dataclasses

    from cifar_search.train.models import create_model
    from cifar_search.train.presets import get_preset
    from cifar_search.train.recipe import train_loader
    from cifar_search.train.runtime import resolve_runtime
    from cifar_search.train.trainer import train

    cfg = dataclasses.replace(get_preset(preset).config, epochs=1)
    runtime = resolve_runtime(device)
    tx, ty = device_arrays(x, y, device)
    size = cfg.model.input_size
    feeds = {
        "DeviceLoader + BatchAugment": lambda: train_loader(cfg, tx, ty, runtime, seed=0),
        "DataLoader, PIL, 2 workers": lambda: PilLoader(
            PilDataset(x, y, pil_transform(cfg.augment, size)), cfg.batch_size, 2),
        "DataLoader, PIL, 0 workers": lambda: PilLoader(
            PilDataset(x, y, pil_transform(cfg.augment, size)), cfg.batch_size, 0),
    }
    rows = []
    for name, make in feeds.items():
        warm = make()
        train(create_model(cfg.model), cfg, warm, None, runtime, seed=0, max_epochs=1)
        loader = make()
        start = time.perf_counter()
        result = train(create_model(cfg.model), cfg, loader, None, runtime, seed=0)
        seconds = time.perf_counter() - start
        rows.append(f"| {preset} | {name} | {len(x):,} | {seconds:.1f} | "
                    f"{result.history[-1].images_per_s:,.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None)
    parser.add_argument("--n", type=int, default=10_000, help="images per epoch")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs; the best is kept")
    parser.add_argument("--epoch-preset", help="also time one training epoch of this preset")
    parser.add_argument("--skip-augment", action="store_true", help="only the epoch table")
    args = parser.parse_args()
    arrays = load_cifar10(args.data, download=False)
    x, y = arrays.train_x[: args.n], arrays.train_y[: args.n]
    rows = []
    for name, (cfg, transform) in ([] if args.skip_augment else recipes().items()):
        dataset = PilDataset(x, y, transform)
        mine = ours(x, y, cfg, args.batch_size, args.device, args.repeat)
        base = {w: theirs(dataset, args.batch_size, w, args.repeat) for w in (2, 0)}
        rows.append(
            f"| {name} | {mine:,.0f} | {base[2]:,.0f} | {base[0]:,.0f} "
            f"| {mine / base[2]:.1f}x | {mine / base[0]:.1f}x |"
        )
    print(f"{len(x):,} images of {arrays.source}, batch {args.batch_size}, device {args.device}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"best of {args.repeat} epochs after a warm-up epoch\n")
    print("| recipe | DeviceLoader + BatchAugment (img/s) | DataLoader, PIL, 2 workers "
          "| DataLoader, PIL, 0 workers | speed-up vs 2 workers | speed-up vs 0 workers |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    if args.epoch_preset:
        print("\nOne training epoch through `cifar_search.train.trainer.train` "
              "(warm-up epoch first; wall time includes the loader):\n")
        print("| preset | fed by | images | epoch s | train images/s |")
        print("| --- | --- | ---: | ---: | ---: |")
        print("\n".join(epoch_seconds(args.epoch_preset, x, y, args.device)))


if __name__ == "__main__":
    main()
