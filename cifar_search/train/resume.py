"""A training that survives Ctrl-C: its state, after an epoch or inside one, saved and loaded back.

nanoGPT's ``ckpt.pt`` holds the model, the optimiser, the iteration and the config, so
``init_from = 'resume'`` goes on where a run stopped. A training here holds more than that,
and a resumed one must be the same training, not a similar one: the weights, the optimiser's
moments, the scheduler's position, the EMA and lookahead copies, the early-stopping keeper, the
history, the random generators of Python, NumPy and torch (every device), plus whatever the
caller keeps beside it (the pacer's seconds a batch, the images of the epochs run); inside an
epoch also the epoch's running sums, its step and the loader's position (its augmentation
generator's state). :func:`cifar_search.train.trainer.train` hands that state out after each
epoch, and with ``mid_epoch`` after each step, as a thunk (building it copies nothing until
asked) and takes it back through ``resume=``; this module decides when to write it (about once
a minute, wherever in an epoch that falls) and reads it back.

A :class:`Checkpoint` is one file, written atomically (:mod:`cifar_search.atomic`) with
:func:`torch.save` and read with ``torch.load(weights_only=True)`` (no pickled code runs on
load). It carries a ``meta`` dict (the config, the seed, the data's size, the images an epoch)
and is used only when the caller's ``meta`` is the same; another one is left alone on disk
until the new training writes over it, with a warning that names what differs. A write that
fails (a full disk) is logged and training goes on: a checkpoint saves time, it is never
needed to finish.

Example:
    >>> ckpt = Checkpoint("runs/x/resume/seed-0.pt", meta={"seed": 0}, every_s=60)
    >>> saved = ckpt.load()                   # None, or {"train": ..., "extra": ...}
    >>> train(..., resume=saved and saved["train"],
    ...       on_state=lambda epoch, state: ckpt.offer(epoch, state, extra))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifar_search.atomic import atomic_path

logger = logging.getLogger(__name__)

# bump when the state's layout changes: files of a format not in READS are ignored, with a
# warning. 2: states taken inside an epoch ("partial"), which format 1's reader would misread;
# format 1 files (states after an epoch) read the same as ever.
FORMAT = 2
READS = (1, 2)
EVERY_S = 60.0  # seconds of training between writes (0: after every epoch)

State = dict[str, Any]


def rng_state() -> State:
    """The random generators of Python, NumPy and torch (CPU and every CUDA device), in types
    ``torch.load(weights_only=True)`` reads back."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)  # the legacy tuple: (name, keys, pos, has_gauss, gauss)
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: State) -> None:
    """Undo :func:`rng_state`: every generator back where it was."""
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def where(saved: State, epochs: int) -> str:
    """Where a saved training goes on, for humans: ``after epoch 2 of 21``, or ``in epoch 3 of
    21, after batch 14 of 86`` for a state taken inside an epoch."""
    inside = saved["train"].get("partial")
    if inside is None:
        return f"after epoch {saved['epoch']} of {epochs}"
    return (f"in epoch {inside['epoch']} of {epochs}, after batch {inside['step']} of "
            f"{inside['batches']}")


def _tuples(x: Any) -> Any:
    """``random.setstate`` wants tuples all the way down; a round trip may give lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


class Checkpoint:
    """The resume file of one training.

    Args:
        path: The file (its folder is created on the first write).
        meta: What makes a saved state this training's (JSON-like: config dict, seed, sizes).
        every_s: Seconds of wall time between writes (0: every epoch).
        clock: Seconds, monotonic (tests pass their own).
    """

    def __init__(self, path: str | Path, meta: State, *, every_s: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.meta, self.every_s = Path(path), meta, every_s
        self._now = clock
        self._last = clock()

    def load(self) -> State | None:
        """The saved ``{"epoch", "train", "extra"}``, or None: no file, one that cannot be read,
        or one of another training (each logged, and the file is left as it is)."""
        if not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file: torch raises several types
            logger.warning("ignoring the unreadable resume file %s (%s): training from the "
                           "start", self.path, exc)
            return None
        if not isinstance(saved, dict) or saved.get("format") not in READS:
            logger.warning("ignoring %s: written by another version of cifar-search", self.path)
            return None
        differs = _differences(saved.get("meta", {}), self.meta)
        if differs:
            logger.warning("ignoring %s: it is another training (%s): training from the start",
                           self.path, "; ".join(differs[:3]))
            return None
        return saved

    def offer(self, epoch: int, state: Callable[[], State], extra: State | None = None) -> bool:
        """Write the state after ``epoch`` when ``every_s`` has passed since the last write (or
        the start); True if written. ``state`` is only called then."""
        if self._now() - self._last < self.every_s:
            return False
        return self.save(epoch, state(), extra)

    def save(self, epoch: int, train: State, extra: State | None = None) -> bool:
        """Write ``train`` (the trainer's state, or what a caller keeps of a finished run) and
        ``extra`` as the state after ``epoch`` now; True if written."""
        saved = {"format": FORMAT, "meta": self.meta, "epoch": epoch, "train": train,
                 "extra": extra or {}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as tmp:
                torch.save(saved, tmp)
        except OSError as exc:
            logger.warning("could not save the resume file %s (%s): training goes on, but a "
                           "stop now would start it again", self.path, exc)
            return False
        self._last = self._now()
        logger.debug("saved the state after epoch %d to %s", epoch, self.path)
        return True

    def clear(self) -> None:
        """Remove the file (the training it holds has finished), and its folder if empty."""
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty (other seeds' files) or already gone
            self.path.parent.rmdir()


def _differences(saved: State, meta: State) -> list[str]:
    """``key: saved != now`` for every dotted key where two metas differ."""
    a, b = _flat(saved), _flat(meta)
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def _flat(d: State, prefix: str = "") -> State:
    out: State = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out
