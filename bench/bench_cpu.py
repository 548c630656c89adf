"""CPU throughput of every preset: training and evaluation images/s, fp32 vs bf16 autocast,
channels_last vs contiguous, through the real trainer, loader and augmentation.

For each preset and each (precision, memory format): a fresh model, a warm-up call of
:func:`cifar_search.train.trainer.train` on one batch (oneDNN primitives, allocator), then one
timed epoch of ``images`` training images through the same ``train`` (``DeviceLoader`` +
``BatchAugment`` with the preset's augmentation, optimiser and schedule) and one evaluation pass
(:func:`cifar_search.train.trainer.evaluate`, no TTA) over the same images. The training figure is
the trainer's own ``EpochMetrics.images_per_s`` (augmentation included, evaluation excluded); the
epoch time is extrapolated to 45,000 images (the search's training split). Big models get fewer
images and a smaller batch than their preset (see ``PLAN``): per-image rates on a CPU barely move
with the batch size once it is past ~32.

The reference machine is shared, so beside every figure stand the 1-minute load average before
it and the cores other processes kept busy during it (``/proc/stat`` minus this process's CPU
time); with ``--max-load`` the script waits for a quieter machine before each measurement, and
``--repeat N`` keeps the best of N timed epochs. When other processes hold a core, OpenMP's
spinning barriers make 2 threads several times slower than 1: run with
``OMP_WAIT_POLICY=PASSIVE`` (read when torch loads, so set it in the environment) to compare
settings fairly on a shared machine.

    python bench/bench_cpu.py                            # every preset (~15 min on 2 cores)
    python bench/bench_cpu.py --presets fast94,davidnet --images 256
    python bench/bench_cpu.py --quick                    # one small preset, seconds (tests)
    python bench/bench_cpu.py --presets fast94 --precisions bf16 --formats channels_last \
        --compile off,on --images 4096 --batch-size 1024 --repeat 2   # torch.compile or not

With ``--compile on`` the model is ``torch.compile``d as ``--compile`` does it
(``cifar_search.train.compile_cache``); the warm-up column then holds the compilation.

Prints markdown tables to stdout; ``--json FILE`` also writes the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from cifar_search.train.config import TrainConfig
from cifar_search.train.data import load_cifar10
from cifar_search.train.loader import device_arrays
from cifar_search.train.models import count_flops, create_model
from cifar_search.train.presets import PRESETS
from cifar_search.train.recipe import eval_loader, train_loader
from cifar_search.train.runtime import Runtime, cpu_flags, resolve_runtime, seed_everything
from cifar_search.train.trainer import evaluate, train

DEFAULT_DATA = Path("/work/data/cifar10.npz")
EPOCH_IMAGES = 45_000  # training images per epoch of the search (50,000 - 5,000 validation)
PRECISIONS = ("fp32", "bf16")
FORMATS = ("contiguous", "channels_last")
COMPILE = ("off", "on")
# preset -> (training images timed, batch size); None: the preset's batch size
PLAN: dict[str, tuple[int, int | None]] = {
    "ensta-cnn": (1024, None),
    "rdfia-alexnet": (1024, None),
    "fast94": (512, 256),
    "davidnet": (256, 128),
    "era-custom-resnet": (256, 128),
    "resnet18": (128, 64),
    "resnet34": (64, 32),
    "resnet50": (64, 32),
    "shake-shake-26": (64, 32),
}
QUICK = ("rdfia-alexnet", 64, 32)  # --quick: preset, images, batch


@dataclass(frozen=True)
class Row:
    preset: str
    gflops: float  # forward GFLOPs per image
    batch: int
    images: int
    precision: str
    memory_format: str
    compiled: bool  # torch.compile
    warmup_s: float  # the one-batch warm-up call (with torch.compile: the compilation)
    train_ips: float  # training images/s (augmentation included)
    eval_ips: float  # evaluation images/s (no TTA)
    load: float  # 1-minute load average before the measurement
    others: float | None  # cores other processes kept busy during it

    @property
    def epoch_s(self) -> float:
        return EPOCH_IMAGES / self.train_ips


# ---- the shared machine -----------------------------------------------------------------------


def _busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (None where /proc/stat is missing)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Contention:
    others: float | None = None  # mean cores busy outside this process


@contextmanager
def contention() -> Iterator[Contention]:
    """Measure how many cores other processes kept busy during the block."""
    out = Contention()
    busy0, own0, wall0 = _busy_seconds(), time.process_time(), time.perf_counter()
    yield out
    busy1, own1, wall1 = _busy_seconds(), time.process_time(), time.perf_counter()
    if busy0 is not None and busy1 is not None and wall1 > wall0:
        out.others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)


def wait_for_quiet(max_load: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) for the 1-minute load average to fall to ``max_load``."""
    deadline = time.monotonic() + max_wait
    load = os.getloadavg()[0]
    while load > max_load and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


# ---- one measurement --------------------------------------------------------------------------


def runtime_for(precision: str, memory_format: str, compiled: bool = False) -> Runtime:
    return resolve_runtime("cpu", precision, channels_last=memory_format == "channels_last",  # type: ignore[arg-type]
                           compile=compiled)


def measure(
    cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, rt: Runtime, repeat: int = 1
) -> tuple[float, float, float]:
    """(training images/s, evaluation images/s, warm-up seconds) of ``cfg``'s model on ``x``,
    ``y``: the best of ``repeat`` timed epochs and evaluation passes (interference only ever
    slows a run down), and how long the one-batch warm-up took."""
    seed_everything(0)
    model = create_model(cfg.model)
    b = cfg.batch_size
    warm = time.perf_counter()
    # the loaders every training builds (recipe): shuffled, augmented, partial batch dropped
    train(model, cfg, train_loader(cfg, x[:b], y[:b], rt, seed=0), None, rt, seed=0,
          max_epochs=1)
    evaluate(model, eval_loader(x[:b], y[:b], rt, batch_size=b), rt)
    warmup_s = time.perf_counter() - warm
    loader = train_loader(cfg, x, y, rt, seed=0)
    images = eval_loader(x, y, rt, batch_size=min(len(x), 512))
    train_ips = eval_ips = 0.0
    for _ in range(repeat):
        result = train(model, cfg, loader, None, rt, seed=0, max_epochs=1)
        train_ips = max(train_ips, result.history[0].images_per_s)
        start = time.perf_counter()
        evaluate(model, images, rt)
        eval_ips = max(eval_ips, len(x) / (time.perf_counter() - start))
    return train_ips, eval_ips, warmup_s


def bench_preset(
    name: str, images: int, batch: int | None, x: torch.Tensor, y: torch.Tensor,
    args: argparse.Namespace,
) -> list[Row]:
    preset_cfg = PRESETS[name].config
    # early stopping needs a validation loader, which throughput runs do without
    cfg = preset_cfg.replace(batch_size=batch or preset_cfg.batch_size, early_stopping=0)
    n = max(images - images % cfg.batch_size, cfg.batch_size)
    flops = count_flops(create_model(cfg.model), cfg.model.input_size) / 1e9
    rows = []
    for precision in args.precisions:
        for fmt in args.formats:
            for compiled in (c == "on" for c in args.compile):
                load = wait_for_quiet(args.max_load, args.max_wait)
                with contention() as c:
                    train_ips, eval_ips, warmup_s = measure(
                        cfg, x[:n], y[:n], runtime_for(precision, fmt, compiled), args.repeat)
                rows.append(Row(name, flops, cfg.batch_size, n, precision, fmt, compiled,
                                warmup_s, train_ips, eval_ips, load, c.others))
                print(f"  {name} {precision} {fmt}{' compiled' if compiled else ''}: "
                      f"{train_ips:,.1f} train img/s, {eval_ips:,.1f} eval img/s, warm-up "
                      f"{warmup_s:.1f} s (load {load:.2f})", file=sys.stderr, flush=True)
    return rows


# ---- tables -----------------------------------------------------------------------------------


def cpu_description() -> str:
    model = platform.processor() or platform.machine()
    flags = cpu_flags()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    bf16 = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f") if f in flags]
    return (f"{model}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, "
            f"ISA {torch.backends.cpu.get_cpu_capability()}, bf16/matrix units: "
            f"{', '.join(bf16) or 'none (no avx512_bf16, no AMX)'}")


def table(rows: list[Row]) -> str:
    out = ["| preset | fwd GFLOP/img | batch | images | precision | memory format "
           "| torch.compile | warm-up (s) | train img/s | epoch of 45k (s) | eval img/s "
           "| load avg 1 min | other procs (cores) |",
           "| --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: "
           "| ---: |"]
    for r in rows:
        others = "n/a" if r.others is None else f"{r.others:.2f}"
        out.append(f"| {r.preset} | {r.gflops:.3f} | {r.batch} | {r.images} | {r.precision} "
                   f"| {r.memory_format} | {'yes' if r.compiled else 'no'} | {r.warmup_s:.1f} "
                   f"| {r.train_ips:,.1f} | {r.epoch_s:,.0f} "
                   f"| {r.eval_ips:,.1f} | {r.load:.2f} | {others} |")
    return "\n".join(out)


def _setting(r: Row) -> tuple[str, str, bool]:
    return r.precision, r.memory_format, r.compiled


def _label(key: tuple[str, str, bool]) -> str:
    return f"{key[0]} {key[1]}{' compiled' if key[2] else ''}"


def summary(rows: list[Row]) -> str:
    """Per setting: geometric-mean speed against the first setting measured (fp32, contiguous,
    not compiled, where it was), and the presets where it is fastest."""
    settings = sorted({_setting(r) for r in rows},
                      key=lambda k: (PRECISIONS.index(k[0]), FORMATS.index(k[1]), k[2]))
    if not settings:
        return ""
    first = settings[0]
    base = {r.preset: r for r in rows if _setting(r) == first}
    fastest: dict[tuple[str, str, bool], int] = {}
    for preset in {r.preset for r in rows}:
        key = _setting(max((r for r in rows if r.preset == preset), key=lambda r: r.train_ips))
        fastest[key] = fastest.get(key, 0) + 1
    out = [f"| precision | memory format | torch.compile | train speed vs {_label(first)} "
           f"(geo. mean) | eval speed vs {_label(first)} | presets where fastest (train) |",
           "| --- | --- | --- | ---: | ---: | ---: |"]
    for key in settings:
        sel = [r for r in rows if _setting(r) == key and r.preset in base]
        if not sel:
            continue
        tr = _geomean([r.train_ips / base[r.preset].train_ips for r in sel])
        ev = _geomean([r.eval_ips / base[r.preset].eval_ips for r in sel])
        out.append(f"| {key[0]} | {key[1]} | {'yes' if key[2] else 'no'} | {tr:.2f}x "
                   f"| {ev:.2f}x | {fastest.get(key, 0)} |")
    return "\n".join(out)


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None,
                   help="cifar10.npz or cifar-10-batches-py/ (default: /work/data/cifar10.npz)")
    p.add_argument("--presets", help="comma-separated (default: all of PRESETS)")
    p.add_argument("--images", type=int, help="training images timed per preset (default: PLAN)")
    p.add_argument("--batch-size", type=int, help="batch size for every preset (default: PLAN)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="fp32,bf16")
    p.add_argument("--formats", default=",".join(FORMATS), help="contiguous,channels_last")
    p.add_argument("--compile", default="off", help="off,on: torch.compile the model or not "
                   "(default: off)")
    p.add_argument("--max-load", type=float, default=2.5,
                   help="wait before each measurement until the 1-min load average is below this")
    p.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait at most")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK[0]} only, {QUICK[1]} images, batch {QUICK[2]}: a smoke test")
    p.add_argument("--repeat", type=int, default=1,
                   help="timed epochs per setting; the best is kept (default: 1)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    args.precisions = tuple(v for v in args.precisions.split(",") if v)
    args.formats = tuple(v for v in args.formats.split(",") if v)
    args.compile = tuple(v for v in args.compile.split(",") if v)
    bad = [v for v in args.precisions if v not in PRECISIONS]
    bad += [v for v in args.formats if v not in FORMATS]
    bad += [v for v in args.compile if v not in COMPILE]
    names = args.presets.split(",") if args.presets else list(PRESETS)
    bad += [n for n in names if n not in PRESETS]
    if bad:
        p.error(f"unknown value {bad[0]!r} (presets: {', '.join(PRESETS)}; precisions: "
                f"{', '.join(PRECISIONS)}; formats: {', '.join(FORMATS)}; compile: "
                f"{', '.join(COMPILE)})")
    if args.quick:
        names = [args.presets.split(",")[0] if args.presets else QUICK[0]]
        args.images = args.images or QUICK[1]
        args.batch_size = args.batch_size or QUICK[2]
    args.names = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arrays = load_cifar10(args.data, download=False)
    plans = {n: (args.images or PLAN.get(n, (256, None))[0],
                 args.batch_size or PLAN.get(n, (256, None))[1]) for n in args.names}
    most = max(images for images, _ in plans.values())
    x, y = device_arrays(arrays.train_x[:most], arrays.train_y[:most], "cpu")
    start = time.perf_counter()
    rows: list[Row] = []
    for name in args.names:
        images, batch = plans[name]
        rows += bench_preset(name, images, batch, x, y, args)
    default = resolve_runtime("cpu").describe()
    print(f"# CPU throughput, {datetime.date.today()}\n")
    print(f"- device: {cpu_description()}")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}, "
          f"data {arrays.source}, {time.perf_counter() - start:.0f} s in all; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    command = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"- command: `python bench/bench_cpu.py {command}`")
    print(f"- resolve_runtime('cpu') default: {default['precision']}, "
          f"channels_last={default['channels_last']}")
    print(f"- each figure: the best of {args.repeat} epoch(s) of `images` training images "
          "through cifar_search.train.trainer.train after a one-batch warm-up "
          "(evaluation: the same images, no TTA); the epoch of 45k is extrapolated\n")
    print(table(rows))
    print()
    print(summary(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
