"""Device-resident batches: the uint8 dataset lives on the device once per process.

No worker processes and no per-image Python: a batch is an index into the device copy, augmented
by :class:`~cifar_search.train.augment.BatchAugment` and converted to float there.

Example:
    >>> x, y = device_arrays(arrays.train_x, arrays.train_y, runtime.device)  # doctest: +SKIP
    >>> loader = DeviceLoader(x, y, 512, augment=BatchAugment(cfg.augment), shuffle=True,
    ...                       drop_last=True, seed=seed)                      # doctest: +SKIP
    >>> for epoch in range(epochs):                                          # doctest: +SKIP
    ...     loader.set_epoch(epoch)
    ...     for images, targets in loader: ...
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from cifar_search.errors import DataError
from cifar_search.train.augment import BatchAugment

logger = logging.getLogger(__name__)

# (id of the host array, device) -> (uint8 NCHW, int64) on the device. An entry leaves when its
# host array is garbage-collected, so a reused id never finds a stale copy.
_DEVICE_CACHE: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def device_arrays(
    x_nhwc: np.ndarray, y: np.ndarray, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy HWC uint8 images and labels to ``device`` as (uint8 NCHW, int64), once per process.

    The copy is keyed by the identity of both numpy arrays and the device, so every trial in a
    worker that passes the same arrays (e.g. ``load_cifar10().train_x``) shares one device copy.

    Raises:
        DataError: wrong shape or dtype.
    """
    if x_nhwc.dtype != np.uint8 or x_nhwc.ndim != 4 or x_nhwc.shape[3] != 3:
        raise DataError(f"images must be uint8 (N, H, W, 3), got {x_nhwc.dtype} {x_nhwc.shape}.")
    if y.shape != x_nhwc.shape[:1]:
        raise DataError(f"{len(x_nhwc)} images but labels of shape {y.shape}.")
    device = torch.device(device)
    key = (id(x_nhwc), id(y), str(device))
    if key not in _DEVICE_CACHE:
        nchw = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
        labels = torch.tensor(y, dtype=torch.int64)  # copies: the cached host arrays are read-only
        _DEVICE_CACHE[key] = (nchw.to(device), labels.to(device))
        for owner in (x_nhwc, y):
            weakref.finalize(owner, _DEVICE_CACHE.pop, key, None)
        logger.debug("copied %d images to %s", len(x_nhwc), device)
    return _DEVICE_CACHE[key]


class DeviceLoader:
    """Batches from device tensors, shuffled and augmented on the device.

    Args:
        x: uint8 (N, 3, 32, 32) images on the device.
        y: int64 (N,) labels on the same device.
        batch_size: images per batch.
        augment: applied to every batch; ``None``: images are only converted to float [0, 1].
        shuffle: a new order every epoch, from ``seed + epoch`` (see :meth:`set_epoch`).
        drop_last: drop the last incomplete batch.
        seed: base seed of the shuffle and of the augmentation's random draws.
        memory_format: of the yielded images (``torch.channels_last`` on CUDA).
        max_batches: batches per epoch at most (``None``: every image). With ``shuffle`` each
            epoch is then a fresh random subset: a fractional epoch count spread evenly over the
            epochs, as ``auto`` uses to fill its time budget exactly.

    Iterating yields ``(x float32 in [0, 1] (B, 3, S, S), target)`` with ``target`` int64 (B,)
    or float (B, classes) soft targets. Iteration never synchronises with the host, except the
    group sizes of AutoAugment / TrivialAugment (one per step).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        augment: BatchAugment | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
        max_batches: int | None = None,
    ) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise DataError(f"images must be uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}.")
        if y.shape != x.shape[:1] or y.device != x.device:
            raise DataError(
                f"labels must be ({len(x)},) on {x.device}, got {tuple(y.shape)} on {y.device}."
            )
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, but got {batch_size=}.")
        if max_batches is not None and max_batches < 1:
            raise DataError(f"max_batches must be >= 1 or None, but got {max_batches=}.")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.memory_format = memory_format
        self.max_batches = max_batches
        self.epoch = 0
        self._batch = 0  # batches of this epoch yielded so far
        self._aug_gen: torch.Generator | None = None  # the epoch's augmentation generator
        self._seek: dict[str, object] | None = None  # where the next iteration starts

    @property
    def num_examples(self) -> int:
        """Images in the dataset (those yielded per epoch: ``len(self) * batch_size`` at most)."""
        return len(self.x)

    @property
    def all_batches(self) -> int:
        """Batches of an epoch of every image (what ``max_batches`` caps)."""
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def epoch_images(self) -> int:
        """Images an epoch yields now: ``len(self)`` batches, the last one possibly short."""
        return min(len(self) * self.batch_size, len(self.x))

    def __len__(self) -> int:
        batches = self.all_batches
        return batches if self.max_batches is None else min(batches, self.max_batches)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: its shuffle order, augmentation draws and alternating-flip parity."""
        self.epoch = epoch

    def position(self) -> dict[str, object]:
        """Where the epoch being iterated is: its batches yielded and the state of its
        augmentation generator after them. :meth:`seek` to it and the next iteration yields
        the rest of that epoch, the same batches to the bit (a training stopped inside an
        epoch goes on from there: :mod:`cifar_search.train.resume`)."""
        aug = None if self._aug_gen is None else self._aug_gen.get_state()
        return {"epoch": self.epoch, "batch": self._batch, "aug": aug}

    def seek(self, position: dict[str, object]) -> None:
        """Start the next iteration at ``position`` (from :meth:`position`), after
        :meth:`set_epoch` to its epoch; later iterations start at their epoch's first batch.

        Raises:
            DataError: ``position`` is of another epoch, or past this epoch's batches.
        """
        epoch, batch = position["epoch"], position["batch"]
        if epoch != self.epoch or not isinstance(batch, int) or not 0 <= batch <= len(self):
            raise DataError(f"cannot seek to batch {batch} of epoch {epoch}: the loader is at "
                            f"epoch {self.epoch} of {len(self)} batches.")
        self._seek = position

    def _generator(self, stream: int) -> torch.Generator:
        """A generator on the data's device, fixed by (seed, epoch, stream)."""
        words = np.random.SeedSequence([self.seed, self.epoch, stream]).generate_state(2)
        g = torch.Generator(device=self.x.device)
        g.manual_seed(int(words[0]) << 32 | int(words[1]))
        return g

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.x), self.batch_size
        order = None
        if self.shuffle:
            g = torch.Generator(device=self.x.device)
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g, device=self.x.device)
        aug_gen = self._generator(1) if self.augment is not None else None
        first, seek, self._seek = 0, self._seek, None
        if seek is not None:
            first = int(seek["batch"])  # type: ignore[call-overload]
            if aug_gen is not None and isinstance(seek["aug"], torch.Tensor):
                aug_gen.set_state(seek["aug"])
        self._aug_gen, self._batch = aug_gen, first
        for i in range(first, len(self)):
            if order is None:
                xb, yb = self.x[i * bs : (i + 1) * bs], self.y[i * bs : (i + 1) * bs]
            else:
                idx = order[i * bs : (i + 1) * bs]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if self.augment is None or aug_gen is None:
                images, target = TF.to_dtype(xb, torch.float32, scale=True), yb
            else:
                images, target = self.augment(xb, yb, aug_gen, self.epoch)
            self._batch = i + 1
            yield images.contiguous(memory_format=self.memory_format), target
