"""Measured training and evaluation speed of a config on this device, cached per device.

``auto`` plans a wall-clock budget from these figures instead of fixed budget names: how many
epochs of each candidate fit in the final training, and what one search trial costs. A
measurement is a warm-up step (oneDNN / cuDNN primitives, the allocator), then timed batches
through the real trainer, loader and augmentation (about :data:`TIMED_SECONDS` of them), and a
timed forward pass.

A measurement runs at the config's own batch size (capped at :data:`MAX_BATCH`): the rate on a
GPU depends on it, and on a CPU a few steps of the real batch agree with whole epochs better
than small batches do. Figures are cached in
``<cache>/throughput.json`` under the device name, precision, memory format, torch version and
the model and batch, so a second plan on the same machine measures nothing. A measurement
taken while other processes kept this process's CPUs busy (:func:`cpu_watch`: a test run, a
second training) is used for the plan in hand, which runs on the machine as it is, but not
cached: a rate measured 2-3x low would otherwise plan every later run on a quiet machine.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cifar_search.atomic import atomic_write_text
from cifar_search.train.config import TrainConfig
from cifar_search.train.data import default_data_dir
from cifar_search.train.evaluation import evaluate
from cifar_search.train.models import create_model
from cifar_search.train.recipe import eval_loader, train_loader
from cifar_search.train.runtime import Runtime, seed_everything
from cifar_search.train.trainer import INIT_IMAGES, train

logger = logging.getLogger(__name__)

MAX_BATCH = 1024  # images per timed step at most
TIMED_SECONDS = 3.0  # about this long a timed difference of steps (see measure)
MIN_STEPS, MAX_STEPS = 2, 32  # timed extra steps, at least and at most
CACHE_NAME = "throughput.json"
METHOD = 4  # in the cache key: figures measured another way are not reused
# of this process's CPUs' time that other processes may have used while it measured, at most,
# for the rate to be cached (a 2.5-minute test run beside a measurement took ~50% and made the
# rates 2-3x low; an idle machine's background is a few %)
BUSY_LIMIT = 0.25


@dataclass(frozen=True)
class Rate:
    """Images per second of one config on one device."""

    train: float  # training images/s, augmentation and optimiser step included
    eval: float  # single-view evaluation images/s (test-time augmentation multiplies the cost)

    def train_seconds(self, images: int, epochs: int) -> float:
        return images * epochs / self.train

    def eval_seconds(self, images: int, views: int = 1) -> float:
        return images * views / self.eval


def tta_views(tta: str) -> int:
    """Forward passes per image of a test-time augmentation (see cifar_search.train.evaluation)."""
    return {"none": 1, "flip": 2, "flip_translate": 6}[tta]


def measure(cfg: TrainConfig, runtime: Runtime, x: torch.Tensor, y: torch.Tensor) -> Rate:
    """Time ``cfg`` on ``x`` (uint8 (N, 3, 32, 32) on the device) and ``y``.

    A warm-up call of the real trainer, then two timed one-epoch calls of 1 and ``1 + k``
    batches: the rate is the extra batches over the extra time, so what every call pays once
    (optimiser state, the data-dependent init, the first step's allocations) does not count, as
    it does not count over a whole training. Both calls draw their batches from the same image
    pool, so the data-dependent init (airbench's whitening, on the pool's first images) costs
    them the same. ``k`` is chosen from the first call so that the extra batches take about
    :data:`TIMED_SECONDS` (within ``[MIN_STEPS, MAX_STEPS]``): a small net's step is short
    enough that a fixed couple of steps is swamped by noise and by what a call pays once. Then
    a timed evaluation pass."""
    b = min(cfg.batch_size, MAX_BATCH)
    n = max(b * (1 + MAX_STEPS), INIT_IMAGES)
    x, y = x.repeat(n // len(y) + 1, 1, 1, 1)[:n], y.repeat(n // len(y) + 1)[:n]
    cfg = cfg.replace(batch_size=b, early_stopping=0, epochs=1)
    seed_everything(0)
    model = create_model(cfg.model)

    def timed_train(batches: int) -> float:
        loader = train_loader(cfg, x, y, runtime, seed=0, max_batches=batches)
        _sync(runtime)
        start = time.perf_counter()
        train(model, cfg, loader, None, runtime, seed=0)
        _sync(runtime)
        return time.perf_counter() - start

    timed_train(1)  # warm-up
    one = timed_train(1)
    k = min(MAX_STEPS, max(MIN_STEPS, math.ceil(TIMED_SECONDS / max(one, 1e-6))))
    more = timed_train(1 + k)
    train_rate = k * b / max(more - one, 1e-9)
    images = eval_loader(x[: b * k], y[: b * k], runtime, batch_size=b)
    evaluate(model, images, runtime)  # warm-up of the eval-mode kernels
    _sync(runtime)
    start = time.perf_counter()
    evaluate(model, images, runtime)
    _sync(runtime)
    eval_rate = b * k / max(time.perf_counter() - start, 1e-9)
    return Rate(train=train_rate, eval=eval_rate)


def _cpu_seconds() -> tuple[float, float, int] | None:
    """(busy seconds of the CPUs this process may run on, this process's CPU seconds, their
    number), from ``/proc/stat``; None where there is no such file (not Linux)."""
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        ticks, seen = 0, 0
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                name, *fields = line.split()
                if name in cpus:  # user nice system idle iowait irq softirq steal: busy ones
                    v = [int(f) for f in fields[:8]]
                    ticks += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                    seen += 1
        if seen != len(cpus):  # a /proc/stat that does not list this process's CPUs
            return None
        own = os.times()
        return ticks / os.sysconf("SC_CLK_TCK"), own.user + own.system, len(cpus)
    except (OSError, AttributeError, ValueError, IndexError):
        return None


def cpu_watch() -> Callable[[], float | None]:
    """Start watching this process's CPUs; the function returned gives the share of their time
    that other processes have used since (0: only this process ran; None: not measurable here).

    Hand-written from ``/proc/stat`` since psutil is not a dependency and ``os.getloadavg`` is a
    1-minute average that still counts a training that just ended and misses one that just
    began."""
    start, t0 = _cpu_seconds(), time.perf_counter()

    def others() -> float | None:
        end, wall = _cpu_seconds(), time.perf_counter() - t0
        if start is None or end is None or wall <= 0:
            return None
        busy = (end[0] - start[0]) - (end[1] - start[1])
        return min(max(busy / (wall * end[2]), 0.0), 1.0)

    return others


def _sync(runtime: Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)


class RateCache:
    """``throughput.json``: measured :class:`Rate` per device and config, read and written
    whole (a few kB). A corrupt file is ignored and rewritten, never an error."""

    def __init__(self, path: Path | None = None, *,
                 watch: Callable[[], Callable[[], float | None]] = cpu_watch) -> None:
        self.path = path if path is not None else self.default_path()
        self.watch = watch
        self._entries: dict[str, dict[str, float]] = self._read()

    @staticmethod
    def default_path() -> Path:
        return default_data_dir() / CACHE_NAME

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def key(cfg: TrainConfig, runtime: Runtime) -> str:
        d = runtime.describe()
        return json.dumps([METHOD, d["device_name"], d["precision"], d["channels_last"],
                           torch.__version__, repr(cfg.model), repr(cfg.augment),
                           cfg.batch_size, cfg.optim.optimizer, cfg.lookahead, cfg.ema_decay])

    def get(self, cfg: TrainConfig, runtime: Runtime) -> Rate | None:
        hit = self._entries.get(self.key(cfg, runtime))
        try:
            return None if hit is None else Rate(float(hit["train"]), float(hit["eval"]))
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, cfg: TrainConfig, runtime: Runtime, rate: Rate) -> None:
        self._entries[self.key(cfg, runtime)] = asdict(rate)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self._entries, indent=0))
        except OSError as exc:  # a read-only cache only costs the next plan a measurement
            logger.warning("could not write the throughput cache %s: %s", self.path, exc)

    def rate(self, cfg: TrainConfig, runtime: Runtime, x: torch.Tensor, y: torch.Tensor, *,
             fresh: bool = False) -> tuple[Rate, bool]:
        """The cached rate of ``cfg``, or (none cached, or ``fresh``) a measurement now, which
        is what the plan uses and is cached unless other processes used more than
        :data:`BUSY_LIMIT` of the CPUs meanwhile. Returns ``(rate, measured_now)``."""
        hit = None if fresh else self.get(cfg, runtime)
        if hit is not None:
            return hit, False
        others = self.watch()
        rate = measure(cfg, runtime, x, y)
        busy = others()
        if busy is not None and busy > BUSY_LIMIT:
            logger.warning("other processes used %.0f%% of the CPUs while %s was measured: its "
                           "rate (%.0f images/s) is used now but not cached", 100 * busy,
                           cfg.model.family, rate.train)
        else:
            self.put(cfg, runtime, rate)
        return rate, True
