"""Small generated CIFAR-10-like datasets in both real on-disk formats.

Images are learnable in seconds by a small CNN: each class has its own colour and its own stripe
pattern (orientation and frequency), with a random phase, brightness jitter and pixel noise.

- :func:`write_npz`: ``cifar10.npz`` with the keys of the offline copy (labels uint8, like it).
- :func:`write_batches`: the official ``cifar-10-batches-py/`` layout (``data_batch_1..5``,
  ``test_batch``, ``batches.meta``): Python 2 style pickles (protocol 2, byte-string keys,
  ``numpy.core.multiarray._reconstruct``), planar uint8 (N, 3072) data and a ``labels`` list.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
)
# one RGB colour per class, 0..255
_COLOURS = np.array(
    [
        [230, 60, 60], [60, 200, 60], [60, 80, 230], [220, 220, 60], [200, 60, 220],
        [60, 210, 210], [240, 150, 40], [130, 60, 20], [150, 150, 150], [30, 30, 90],
    ],
    dtype=np.float32,
)


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images uint8 (n, 32, 32, 3) HWC and labels uint8 (n,), classes balanced."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.uint8)
    grid = np.arange(32, dtype=np.float32)
    freq = (1 + labels % 5).astype(np.float32)[:, None, None]  # cycles per image
    vertical = (labels >= 5)[:, None, None]
    coord = np.where(vertical, grid[None, None, :], grid[None, :, None])  # (n, 32, 32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    stripes = np.sin(2 * np.pi * freq * coord / 32 + phase)  # in [-1, 1]
    brightness = rng.uniform(0.7, 1.1, size=(n, 1, 1, 1)).astype(np.float32)
    images = _COLOURS[labels][:, None, None, :] * brightness * (0.75 + 0.25 * stripes[..., None])
    images += rng.normal(0, 12, size=images.shape).astype(np.float32)  # pixel noise, 0..255 scale
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_npz(path: str | Path, n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Path:
    """Write a generated ``.npz`` with keys ``train_x, train_y, test_x, test_y``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    train_x, train_y = make_images(n_train, seed)
    test_x, test_y = make_images(n_test, seed + 1)
    np.savez(path, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    return path


def write_batches(
    folder: str | Path, n_train: int = 2000, n_test: int = 500, seed: int = 0
) -> Path:
    """Write a generated ``cifar-10-batches-py``-style folder; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = make_images(n_train, seed)
    test_x, test_y = make_images(n_test, seed + 1)
    chunks = np.array_split(np.arange(n_train), 5)
    for i, idx in enumerate(chunks, start=1):
        write_py2_pickle(folder / f"data_batch_{i}", _batch(train_x[idx], train_y[idx], i))
    write_py2_pickle(folder / "test_batch", _batch(test_x, test_y, 0))
    meta = {
        b"num_cases_per_batch": len(chunks[0]),
        b"label_names": [c.encode() for c in CLASSES],
        b"num_vis": 3072,
    }
    write_py2_pickle(folder / "batches.meta", meta)
    return folder


def _batch(x: np.ndarray, y: np.ndarray, number: int) -> dict[bytes, Any]:
    label = f"training batch {number} of 5" if number else "testing batch 1 of 1"
    return {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in y],
        b"data": np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(len(x), 3072),
        b"filenames": [f"img_{number}_{i}.png".encode() for i in range(len(x))],
    }


def write_py2_pickle(path: Path, obj: Any) -> None:
    """Pickle ``obj`` as Python 2's cPickle (protocol 2) wrote the official batches."""
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us override single opcodes
    """bytes and str become Python 2 ``str`` opcodes; numpy's reconstructor gets its 2.x name."""

    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

