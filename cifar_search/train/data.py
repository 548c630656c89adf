"""CIFAR-10 sources and checks, the fixed stratified train/val split, stratified subsets.

Two on-disk formats are read:

- ``cifar10.npz`` with ``train_x``/``test_x`` uint8 (N, 32, 32, 3) HWC RGB and integer
  ``train_y``/``test_y`` (the offline copy under ``shared/data/cifar10``, or generated data);
- the official ``cifar-10-batches-py/`` folder (``data_batch_1..5``, ``test_batch``), Python 2
  pickles read through a restricted unpickler that admits only numpy array reconstruction, so a
  planted file cannot run code.

When neither is found and downloading is allowed, torchvision downloads the official archive
(md5-checked) and it is read with the same restricted unpickler, never with ``pickle.load``.

Example:
    >>> arrays = load_cifar10("~/data/cifar10.npz")  # doctest: +SKIP
    >>> split = train_val_split(arrays.train_y)      # doctest: +SKIP
    >>> len(split.train), len(split.val)             # doctest: +SKIP
    (45000, 5000)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import pickle
import socket
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar_search.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

NUM_CLASSES = 10
CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # CIFAR-10 label order (index = label)
IMAGE_SHAPE = (32, 32, 3)  # pixels, pixels, RGB channels (HWC)
ENV_VAR = "CIFAR_SEARCH_DATA"
NPZ_NAME = "cifar10.npz"
BATCHES_DIR = "cifar-10-batches-py"
NPZ_KEYS = ("train_x", "train_y", "test_x", "test_y")
OFFICIAL_COUNTS = {"train": 50_000, "test": 10_000}  # images
VAL_SIZE = 5000  # validation images held out of the 50,000 training images by default
# md5 of the official files, as in torchvision.datasets.CIFAR10 (copied so that reading does not
# import torchvision.datasets); a mismatch is logged, not an error: generated data differs.
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
DOWNLOAD_TIMEOUT_S = 60.0  # seconds of socket silence before a download attempt gives up

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

# Every global the official batches reference, and nothing else (Python 2 names as pickled).
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


@dataclass(frozen=True, eq=False)
class CifarArrays:
    """The whole dataset in host memory. Arrays are read-only: they are shared per process."""

    train_x: np.ndarray  # uint8 (N, 32, 32, 3) HWC RGB
    train_y: np.ndarray  # int64 (N,) in 0..9
    test_x: np.ndarray  # uint8 (M, 32, 32, 3)
    test_y: np.ndarray  # int64 (M,)
    source: str  # the file or folder the arrays were read from


@dataclass(frozen=True, eq=False)
class Split:
    """Sorted, disjoint index arrays into the training set."""

    train: np.ndarray  # int64
    val: np.ndarray  # int64


_CACHE: dict[Path, tuple[tuple[int, ...], CifarArrays]] = {}


def default_data_dir() -> Path:
    """``$XDG_CACHE_HOME/cifar-search``, else ``~/.cache/cifar-search``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cifar-search"


def resolve_data_path(path: str | Path | None = None) -> Path:
    """Where the data is: a ``.npz`` file or a batches folder; else the folder to download into.

    Args:
        path: ``--data``: a ``.npz``, a ``cifar-10-batches-py/`` folder, or a folder holding
            ``cifar10.npz`` or ``cifar-10-batches-py/``. ``None``: ``$CIFAR_SEARCH_DATA``, else
            :func:`default_data_dir`.
    """
    if path is None or str(path) == "":
        path = os.environ.get(ENV_VAR) or default_data_dir()
    p = Path(path).expanduser().resolve()
    if p.is_dir() and not _is_batches_dir(p):
        for candidate in (p / NPZ_NAME, p / BATCHES_DIR):
            if candidate.exists():
                return candidate
    return p


def load_cifar10(path: str | Path | None = None, *, download: bool = True) -> CifarArrays:
    """Load and validate CIFAR-10; repeated calls in a process return the same arrays.

    Args:
        path: see :func:`resolve_data_path`.
        download: when nothing is found, download the official archive into the folder.

    Raises:
        DataError: missing (with how to get it), truncated, corrupt, unsafe or malformed data.
    """
    where = resolve_data_path(path)
    if where.suffix == ".npz" and not where.exists():
        raise DataError(_missing_message(where, "no such file"))
    if where.exists() and where.is_file() and where.suffix != ".npz":
        raise DataError(f"{where}: expected a .npz file or a folder, not another file.")
    if not where.exists() or (where.is_dir() and not _is_batches_dir(where)):
        if not download:
            raise DataError(_missing_message(where, "nothing there and download is off"))
        where = _download(where)
    stamp = _stamp(where)
    cached = _CACHE.get(where)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    arrays = _read_npz(where) if where.is_file() else _read_batches(where)
    _CACHE[where] = (stamp, arrays)
    return arrays


def _missing_message(where: Path, reason: str) -> str:
    return (
        f"CIFAR-10 not found at {where} ({reason}). Either run once with a network connection "
        f"and no --data: torchvision downloads it (about 170 MB) into {default_data_dir()}; or "
        f"pass --data PATH (or set ${ENV_VAR}) to one of: a {NPZ_NAME} file (arrays "
        f"{', '.join(NPZ_KEYS)}), a {BATCHES_DIR}/ folder (data_batch_1..5 and test_batch, as "
        f"in the official cifar-10-python.tar.gz), or a folder holding either."
    )


def _is_batches_dir(p: Path) -> bool:
    return p.is_dir() and any((p / name).is_file() for name in (*TRAIN_BATCHES, "test_batch"))


def _stamp(where: Path) -> tuple[int, ...]:
    """Modification times (ns) and sizes: a changed file is read again."""
    files = [where] if where.is_file() else [where / n for n in (*TRAIN_BATCHES, "test_batch")]
    out: list[int] = []
    for f in files:
        with contextlib.suppress(OSError):
            st = f.stat()
            out += [st.st_mtime_ns, st.st_size]
    return tuple(out)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """torchvision's urlopen has no timeout: without one a firewalled machine would hang."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(root: Path) -> Path:
    """Download and extract the official archive into ``root``; return the batches folder."""
    logger.info("CIFAR-10 not found in %s: downloading the official archive", root)
    try:
        from torchvision.datasets import CIFAR10

        root.mkdir(parents=True, exist_ok=True)
        # CIFAR10.__init__ would unpickle the batches with pickle.load: only its md5-checked
        # download runs here, and our restricted reader reads the files.
        dataset = CIFAR10.__new__(CIFAR10)
        dataset.root = str(root)
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            dataset.download()
    except Exception as exc:  # network, disk, md5 mismatch, bad archive: all say the same
        reason = f"download failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        raise DataError(_missing_message(root, reason)) from exc
    folder = root / BATCHES_DIR
    if not _is_batches_dir(folder):
        raise DataError(_missing_message(root, f"download left no {BATCHES_DIR}/"))
    return folder


def _read_npz(path: Path) -> CifarArrays:
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single .npy array, not an .npz archive with {NPZ_KEYS}.")
        with archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing}; it has {archive.files}.")
            arrays = {k: archive[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}).") from exc
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise DataError(f"{path}: truncated or corrupt .npz ({reason})") from exc
    return _checked(arrays, str(path))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the official batches: only numpy array reconstruction is admitted."""

    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")  # Python 2 pickles, bytes keys
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise DataError(
                f"{self._path}: refused to unpickle global {module}.{name}; CIFAR-10 batches "
                "hold only numpy arrays, lists and dicts (the file is not an official batch)."
            )
        return allowed


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official batch -> (uint8 (N, 32, 32, 3) HWC, int64 (N,))."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read ({exc.strerror}); a {BATCHES_DIR}/ folder holds "
            "data_batch_1..5 and test_batch."
        ) from exc
    _log_md5(path, raw)
    try:
        entry = _RestrictedUnpickler(raw, path).load()
    except DataError:
        raise
    except Exception as exc:  # any failure to decode an untrusted file means it is corrupt
        reason = f"{type(exc).__name__}: {exc}"
        raise DataError(f"{path}: truncated or corrupt pickle ({reason})") from exc
    if not isinstance(entry, dict):
        kind = type(entry).__name__
        raise DataError(f"{path}: expected a dict with data and labels, got a {kind}.")
    data = entry.get(b"data", entry.get("data"))
    labels = entry.get(b"labels", entry.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path}: missing 'data' array or 'labels' list (keys: {list(entry)}).")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}.")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: labels are not integers ({exc}).") from exc
    planar = data.reshape(-1, 3, 32, 32)  # planar RGB rows of 3072 bytes
    return np.ascontiguousarray(planar.transpose(0, 2, 3, 1)), y


def _log_md5(path: Path, raw: bytes) -> None:
    want = OFFICIAL_MD5.get(path.name)
    got = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if want == got:
        logger.debug("%s: official md5 %s", path, got)
    else:
        logger.info("%s: md5 %s is not the official file's (fine for generated data)", path, got)


def _read_batches(folder: Path) -> CifarArrays:
    parts = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    test_x, test_y = _read_batch(folder / "test_batch")
    arrays = {
        "train_x": np.concatenate([x for x, _ in parts]),
        "train_y": np.concatenate([y for _, y in parts]),
        "test_x": test_x,
        "test_y": test_y,
    }
    return _checked(arrays, str(folder))


def _checked(arrays: dict[str, np.ndarray], source: str) -> CifarArrays:
    """Validate shapes, dtypes and labels; return read-only int64-label arrays."""
    out: dict[str, np.ndarray] = {}
    for part in ("train", "test"):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
            raise DataError(
                f"{source}: {part}_x must be uint8 (N, 32, 32, 3) HWC, got {x.dtype} {x.shape}."
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: {part}_y must be integer (N,), got {y.dtype} {y.shape}.")
        if len(x) != len(y):
            raise DataError(f"{source}: {len(x)} {part} images but {len(y)} labels.")
        _check_labels(y, f"{source}: {part}_y")
        if len(x) != OFFICIAL_COUNTS[part]:
            logger.info("%s: %d %s images (official: %d)", source, len(x), part,
                        OFFICIAL_COUNTS[part])
        out[f"{part}_x"] = _read_only(np.ascontiguousarray(x))
        out[f"{part}_y"] = _read_only(y.astype(np.int64))
    return CifarArrays(source=source, **out)


def _check_labels(y: np.ndarray, where: str) -> None:
    if len(y) == 0:
        raise DataError(f"{where}: no examples.")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= NUM_CLASSES:
        raise DataError(f"{where}: labels must be in 0..{NUM_CLASSES - 1}, got {lo}..{hi}.")
    counts = np.bincount(y.astype(np.int64), minlength=NUM_CLASSES)
    absent = np.flatnonzero(counts == 0).tolist()
    if absent:
        raise DataError(f"{where}: class(es) {absent} have no examples.")


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def train_val_split(labels: np.ndarray, val_size: int = VAL_SIZE, seed: int = 0) -> Split:
    """The fixed stratified split of the training set into train and validation indices.

    Each class gives ``val_size / 10`` images when that divides (else shares proportional to the
    class counts, remainders to the largest fractions). Same inputs, same split, on any machine.

    Raises:
        ConfigError: ``val_size`` not in ``[0, len(labels))``.
    """
    labels = np.asarray(labels)
    if not 0 <= val_size < len(labels):
        raise ConfigError(f"val_size must be in [0, {len(labels)}), but got {val_size=}.")
    val = _stratified_pick(np.arange(len(labels)), labels, val_size, seed)
    train = np.setdiff1d(np.arange(len(labels), dtype=np.int64), val, assume_unique=True)
    return Split(train=train, val=val)


def check_train_subset(n: int | None, split_size: int, source: str) -> None:
    """A user's ``--train-subset``: at least one image per class, at most the training split.

    Raises:
        ConfigError: naming the value and the split size.
    """
    if n is None:
        return
    if n < NUM_CLASSES:
        raise ConfigError(f"--train-subset {n} is below {NUM_CLASSES}: a stratified subset "
                          "needs at least one image per class.")
    if n > split_size:
        raise ConfigError(f"--train-subset {n} exceeds the training split of {source}: "
                          f"{split_size:,} images; use at most {split_size}.")


def stratified_subset(
    indices: np.ndarray, labels: np.ndarray, n: int, seed: int = 0
) -> np.ndarray:
    """``n`` of ``indices`` keeping the class proportions (``--train-subset N``); sorted.

    Args:
        indices: positions into ``labels`` to choose from.
        labels: labels of the whole array ``indices`` points into.
        n: how many to keep, ``1 <= n <= len(indices)``.
        seed: the same seed gives the same subset.

    Raises:
        ConfigError: ``n`` out of range.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if not 1 <= n <= len(indices):
        raise ConfigError(f"train subset must be in [1, {len(indices)}] images, but got {n=}.")
    return _stratified_pick(indices, np.asarray(labels)[indices], n, seed)


def _stratified_pick(indices: np.ndarray, labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Pick ``n`` of ``indices`` (whose labels are ``labels``) stratified by class; sorted."""
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * (n / len(labels))
    take = np.floor(share).astype(np.int64)
    remainder = n - int(take.sum())
    order = np.argsort(-(share - take), kind="stable")  # largest fractions first
    take[order[:remainder]] += 1
    rng = np.random.default_rng(seed)
    picked = [
        rng.permutation(indices[labels == c])[:k] for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)
