"""Device and precision, decided once per process; seeding; the environment to record.

Code elsewhere never branches on the device: it asks the :class:`Runtime` for an autocast
context (a no-op where mixed precision is off) and a memory format.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from cifar_search.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors run. Build with :func:`resolve_runtime`."""

    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None: full fp32
    channels_last: bool
    compile: bool = False  # torch.compile, once per architecture shape

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Mixed-precision context for forward passes, or a no-op."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self) -> dict[str, str | bool]:
        name = self.device.type
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        elif self.device.type == "cpu":
            arch = platform.processor() or platform.machine()
            name = f"cpu ({arch}, {torch.get_num_threads()} threads)"
        return {
            "device": str(self.device),
            "device_name": name,
            "precision": "fp32" if self.amp_dtype is None
            else str(self.amp_dtype).removeprefix("torch."),
            "channels_last": self.channels_last,
            "compile": self.compile,
        }


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda`` or ``cuda:i``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec} asked for, but CUDA is not available here.")
        try:
            device = torch.device(spec)
        except RuntimeError as exc:
            raise ConfigError(
                f"--device must be auto, cpu, cuda or cuda:i, got {spec!r}.") from exc
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
        return device
    raise ConfigError(f"--device must be auto, cpu, cuda or cuda:i, but got {spec!r}.")


def resolve_runtime(
    device: str = "auto",
    precision: Precision = "auto",
    channels_last: bool | None = None,
    compile: bool = False,
) -> Runtime:
    """Pick the fastest measured settings for the device unless told otherwise.

    On CUDA: bf16 autocast and channels_last. On a CPU with bf16 units (AVX-512 BF16 or AMX):
    the same, which measured 2.06x fp32 for training on the reference CPU (geometric mean over
    the presets; fastest on 8 of 9, ``bench/RESULTS.md``). On other CPUs: fp32, contiguous, which
    measured fastest on one without them.

    It also makes the CPU treat denormal floats as zero, for the whole process: a dying
    network's tiny activations otherwise run ~8x slower (measured: 650 -> 87 images/s on a
    no-BN trial), and no result changes. On CUDA it turns on cuDNN's autotuner for the process
    (``torch.backends.cudnn.benchmark``): CIFAR's shapes are fixed, so each convolution is
    timed once and its fastest kernel kept, as airbench and ``bench/bench_gpu.py`` run; the
    kernels it picks may differ between runs, so GPU runs are not bit-reproducible.
    """
    dev = resolve_device(device)
    torch.set_flush_denormal(True)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"--precision must be auto, fp32 or bf16, but got {precision!r}.")
    fast_bf16 = dev.type == "cuda" or (dev.type == "cpu" and cpu_has_bf16_units())
    if precision == "auto":
        amp: torch.dtype | None = torch.bfloat16 if fast_bf16 else None
    else:
        amp = torch.bfloat16 if precision == "bf16" else None
    if channels_last is None:
        channels_last = fast_bf16 and (dev.type == "cuda" or amp is not None)
    return Runtime(device=dev, amp_dtype=amp, channels_last=channels_last, compile=compile)


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of bf16 matrix hardware


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX-512 BF16 or AMX)."""
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Library versions to store beside every result (Optuna's read from its package
    metadata: training does not import it)."""
    import torchvision

    from cifar_search._version import __version__

    out = {
        "cifar_search": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "optuna": _installed("optuna"),
        "numpy": np.__version__,
    }
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    return out


def _installed(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def configure_cpu_threads(threads: int | None = None) -> None:
    """Use ``threads`` intra-op threads (default: ``CIFAR_SEARCH_THREADS`` or all cores)."""
    env = os.environ.get("CIFAR_SEARCH_THREADS")
    n = threads or (int(env) if env else None)
    if n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily put ``model`` in eval mode, restoring its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
