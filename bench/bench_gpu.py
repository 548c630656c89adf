"""GPU benchmarks: fast94 time-to-94%, davidnet throughput and MFU, an 8-minute search + retrain.

``fast94``: the ``fast94`` preset on all 50,000 training images for ``--seeds`` seeds (after an
untimed one-epoch warm-up run: cuDNN autotuning, ``torch.compile``), through the real trainer
with the 10,000 test images as its validation loader, so the test accuracy (with the preset's
TTA) is known after every epoch. The training clock is read after a device synchronisation at
epoch ends only and stops while the test set is evaluated: *time to 94%* is the training time
(model placement and whitening init included) at the end of the first epoch whose test accuracy
reaches ``--target``; airbench reports the same for its last epoch.

``davidnet``: the ``davidnet`` preset for ``--epochs`` (24) epochs on 50,000 images: per epoch
images/s and model FLOP utilisation, MFU = forward FLOPs per image (``count_flops``) x 3
(forward + backward) x images/s / ``--peak-tflops`` (989: H100 SXM dense bf16), and the test
accuracy per epoch.

``search``: ``cifar-search run --budget gpu --timeout 480 --study gpu8`` in a fresh storage under
``--out``, then ``cifar-search retrain best --study gpu8``, both timed as subprocesses; the
retrain's test accuracy comes from its ``metrics.json``.

Every mode takes ``--tiny``: the same code on the CPU with a few hundred images, one epoch (and a
smoke-budget search), to prove it runs where no GPU is lent. Markdown goes to stdout,
``--json FILE`` writes the numbers.

    python bench/bench_gpu.py fast94 --seeds 5
    python bench/bench_gpu.py davidnet --epochs 24 --peak-tflops 989
    python bench/bench_gpu.py search --out bench-out/search
    python bench/bench_gpu.py fast94 --tiny --data tests/data/cifar10.npz
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cifar_search.train.config import TrainConfig
from cifar_search.train.data import load_cifar10
from cifar_search.train.models import count_flops, create_model
from cifar_search.train.presets import get_preset
from cifar_search.train.recipe import DataSpec, SplitData, prepare, split
from cifar_search.train.runtime import Runtime, resolve_runtime
from cifar_search.train.trainer import EpochMetrics, TrainResult, train

DEFAULT_DATA = Path("/work/data/cifar10.npz")
H100_BF16_TFLOPS = 989.0  # dense bf16 peak of an H100 SXM (H100 PCIe: 756)
TINY_IMAGES = 256  # training and test images with --tiny (--tiny-images changes it)
TINY_BATCH = 32  # largest batch with --tiny, so an epoch has several steps


# ---- shared -----------------------------------------------------------------------------------


def load_data(path: str | None, device: torch.device, tiny: int | None) -> SplitData:
    """All 50,000 training and 10,000 test images on ``device`` (the first ``tiny`` if set).
    The test set is the validation loader here, as in airbench: this bench times a recipe to
    a test accuracy; a search never sees these numbers."""
    data = split(load_cifar10(path, download=False), DataSpec(val_size=0, test=True), device)
    if tiny:
        assert data.test_x is not None and data.test_y is not None
        data = dataclasses.replace(data, train_x=data.train_x[:tiny], train_y=data.train_y[:tiny],
                                   test_x=data.test_x[:tiny], test_y=data.test_y[:tiny])
    return data


def make_runtime(args: argparse.Namespace) -> Runtime:
    # on CUDA, resolve_runtime turns on cuDNN's autotuner, as every command of the tool does
    return resolve_runtime("cpu" if args.tiny else args.device, args.precision,
                           compile=args.compile)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tiny_config(cfg: TrainConfig, tiny: bool, epochs: int | None) -> TrainConfig:
    """The preset, with ``--epochs``; with tiny one epoch in batches of at most TINY_BATCH."""
    if epochs is not None:
        cfg = cfg.replace(epochs=epochs)
    if tiny:
        cfg = cfg.replace(epochs=1, batch_size=min(cfg.batch_size, TINY_BATCH))
    return cfg.validate()


def device_name(rt: Runtime) -> str:
    return str(rt.describe()["device_name"])


def header(title: str, rt: Runtime, data: SplitData, args: argparse.Namespace) -> str:
    r = rt.describe()
    cudnn = torch.backends.cudnn.version() if rt.device.type == "cuda" else None  # type: ignore[no-untyped-call]
    tiny = " (--tiny: CPU smoke run, not a result)" if args.tiny else ""
    cuda = f", CUDA {torch.version.cuda}, cuDNN {cudnn}" if cudnn else ""
    lines = [
        f"# {title}, {datetime.date.today()}{tiny}\n",
        f"- device: {device_name(rt)}; {r['precision']}, channels_last={r['channels_last']}, "
        f"compile={r['compile']}",
        f"- torch {torch.__version__}{cuda}, Python {platform.python_version()}",
        f"- data: {data.source}: {len(data.train_y):,} training, {len(data.test_y):,} test images",
        f"- command: `python bench/bench_gpu.py {' '.join(args.argv)}`\n",
    ]
    return "\n".join(lines)


@dataclass
class Clock:
    """Training seconds at every epoch end, evaluation excluded (read after a device sync)."""

    device: torch.device
    images_per_epoch: int
    start: float = 0.0
    ends: list[float] = field(default_factory=list)  # perf_counter at each hook call
    eval_s: list[float] = field(default_factory=list)  # evaluation seconds inside each epoch

    def begin(self) -> None:
        sync(self.device)
        self.start = time.perf_counter()

    def hook(self, epoch: int, m: EpochMetrics) -> None:
        sync(self.device)
        self.ends.append(time.perf_counter())
        self.eval_s.append(m.seconds - self.images_per_epoch / m.images_per_s)

    def train_seconds(self) -> list[float]:
        """Training time at the end of each epoch, from :meth:`begin` on."""
        out, evaluated = [], 0.0
        for end, ev in zip(self.ends, self.eval_s, strict=True):
            evaluated += ev
            out.append(end - self.start - evaluated)
        return out


def run_one(
    cfg: TrainConfig, data: SplitData, rt: Runtime, seed: int, max_epochs: int | None = None
) -> tuple[torch.nn.Module, TrainResult, Clock]:
    """Train a fresh model with the test set as validation loader; time it with a Clock."""
    p = prepare(cfg, data, rt, seed=seed)
    clock = Clock(rt.device, len(p.train_loader) * cfg.batch_size)
    clock.begin()
    result = train(p.model, cfg, p.train_loader, p.test_loader, rt, seed=seed,
                   on_epoch_end=clock.hook, max_epochs=max_epochs)
    return p.model, result, clock


def warm_up(cfg: TrainConfig, data: SplitData, rt: Runtime, runs: int) -> None:
    """Untimed runs of two training batches and a full test evaluation: cuDNN autotuning,
    compilation (training and evaluation graphs), allocator."""
    n = 2 * cfg.batch_size
    few = dataclasses.replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n])
    for i in range(runs):
        run_one(cfg, few, rt, seed=10_000 + i, max_epochs=1)


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def emit(text: str, record: dict[str, Any], args: argparse.Namespace) -> None:
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1, default=str))


# ---- fast94 -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedRun:
    seed: int
    test_acc: float  # after the last epoch, with the preset's TTA
    test_acc_per_epoch: list[float]
    train_seconds: float  # all epochs, evaluation excluded
    seconds_to_target: float | None  # training clock at the first epoch reaching the target
    epoch_of_target: int | None
    images_per_s: list[float]  # per epoch


def fast94_seed(
    cfg: TrainConfig, data: SplitData, rt: Runtime, seed: int, target: float
) -> SeedRun:
    _, result, clock = run_one(cfg, data, rt, seed)
    clock_s = clock.train_seconds()
    accs = [m.val_acc for m in result.history]
    hit = next((i for i, a in enumerate(accs) if a >= target), None)
    return SeedRun(seed, accs[-1], accs, clock_s[-1], None if hit is None else clock_s[hit],
                   None if hit is None else hit + 1, [m.images_per_s for m in result.history])


def cmd_fast94(args: argparse.Namespace) -> int:
    rt = make_runtime(args)
    data = load_data(args.data, rt.device, args.tiny_images if args.tiny else None)
    cfg = tiny_config(get_preset("fast94").config, args.tiny, args.epochs)
    seeds = list(range(args.seed, args.seed + (min(args.seeds, 2) if args.tiny else args.seeds)))
    warm_up(cfg, data, rt, args.warmup)
    runs, rows = [], []
    for seed in seeds:
        r = fast94_seed(cfg, data, rt, seed, args.target)
        runs.append(r)
        hit = "-" if r.seconds_to_target is None else (
            f"{r.seconds_to_target:.2f} (epoch {r.epoch_of_target})")
        rows.append(f"| {seed} | {100 * r.test_acc:.2f} | {r.train_seconds:.2f} | {hit} | "
                    f"{statistics.fmean(r.images_per_s):,.0f} |")
        print(f"  seed {seed}: {100 * r.test_acc:.2f}% in {r.train_seconds:.2f} s",
              file=sys.stderr, flush=True)
    accs = [r.test_acc for r in runs]
    secs = [r.train_seconds for r in runs]
    hits = [r.seconds_to_target for r in runs if r.seconds_to_target is not None]
    mean_acc = statistics.fmean(accs)
    text = "\n".join([
        header("fast94: time to 94%", rt, data, args),
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, TTA {cfg.tta}, target "
        f"{100 * args.target:.1f}%, {args.warmup} untimed warm-up run(s); clock: training only "
        "(test evaluation excluded), device synchronised at epoch ends\n",
        "| seed | test acc (%) | training time, all epochs (s) | time to target (s) "
        "| train img/s |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"- test accuracy, mean ± std over {len(accs)} seeds: {mean_std(accs)} "
        f"({'reaches' if mean_acc >= args.target else 'below'} {100 * args.target:.1f}%)",
        f"- training time (all epochs), mean ± std: {mean_std(secs)} s",
        f"- time to target: {len(hits)} of {len(accs)} seeds reached it, mean of those "
        f"{statistics.fmean(hits):.2f} s" if hits else "- time to target: no seed reached it",
    ])
    record = {"mode": "fast94", "device": rt.describe(), "config": cfg.to_dict(),
              "target": args.target, "seeds": [dataclasses.asdict(r) for r in runs],
              "test_acc_mean": mean_acc, "train_seconds_mean": statistics.fmean(secs),
              "date": str(datetime.date.today()), "tiny": args.tiny, "argv": args.argv}
    emit(text, record, args)
    return 0


# ---- davidnet ---------------------------------------------------------------------------------


def cmd_davidnet(args: argparse.Namespace) -> int:
    rt = make_runtime(args)
    data = load_data(args.data, rt.device, args.tiny_images if args.tiny else None)
    cfg = tiny_config(get_preset("davidnet").config, args.tiny, args.epochs)
    flops = count_flops(create_model(cfg.model), cfg.model.input_size)
    peak = args.peak_tflops * 1e12
    warm_up(cfg, data, rt, args.warmup)
    _, result, clock = run_one(cfg, data, rt, args.seed)
    clock_s = clock.train_seconds()
    rows, epochs = [], []
    for m, t in zip(result.history, clock_s, strict=True):
        mfu = 3 * flops * m.images_per_s / peak
        epochs.append(m.as_dict() | {"mfu": mfu, "train_clock_s": t})
        rows.append(f"| {m.epoch} | {m.train_loss:.3f} | {100 * m.val_acc:.2f} "
                    f"| {m.images_per_s:,.0f} | {100 * mfu:.1f} | {t:.1f} |")
    steady = result.history[1:] or result.history  # epoch 1 pays the first-call costs
    ips = statistics.fmean(m.images_per_s for m in steady)
    mfu = 3 * flops * ips / peak
    final = result.history[-1].val_acc
    hit = next((m.epoch for m in result.history if m.val_acc >= args.target), None)
    text = "\n".join([
        header("davidnet: throughput and MFU", rt, data, args),
        f"{cfg.epochs} epochs, batch {cfg.batch_size}; forward {flops / 1e9:.3f} GFLOP/image "
        f"(count_flops), x3 for forward + backward = {3 * flops * len(data.train_y) / 1e12:.1f} "
        f"TFLOP per epoch; MFU against {args.peak_tflops:g} TFLOP/s\n",
        "| epoch | train loss | test acc (%) | train img/s | MFU (%) | training clock (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"- final test accuracy: {100 * final:.2f}% after {len(result.history)} epochs "
        f"({'reaches' if final >= args.target else 'below'} {100 * args.target:.1f}%"
        + (f"; first reached at epoch {hit}" if hit else "") + ")",
        f"- images/s (epochs 2+): {ips:,.0f}; MFU {100 * mfu:.1f}% of {args.peak_tflops:g} "
        "TFLOP/s (augmentation, optimiser and loader included)",
        f"- training time, all epochs: {clock_s[-1]:.1f} s",
    ])
    record = {"mode": "davidnet", "device": rt.describe(), "config": cfg.to_dict(),
              "forward_flops": flops, "peak_tflops": args.peak_tflops, "epochs": epochs,
              "images_per_s": ips, "mfu": mfu, "test_acc": final, "epoch_of_target": hit,
              "train_seconds": clock_s[-1], "date": str(datetime.date.today()),
              "tiny": args.tiny, "argv": args.argv}
    emit(text, record, args)
    return 0


# ---- search + retrain -------------------------------------------------------------------------


def timed(cmd: list[str], log: Path) -> tuple[int, float]:
    """Run ``cmd``, its output appended to ``log``; (exit status, wall seconds)."""
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    return rc, time.perf_counter() - start


def study_summary(storage: str, study: str) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.load_study(study_name=study, storage=storage)
    ends: dict[str, int] = {}
    for t in s.get_trials(deepcopy=False):
        key = str(t.user_attrs.get("end", t.state.name.lower()))
        ends[key] = ends.get(key, 0) + 1
    try:
        best = s.best_trial
        fam = best.user_attrs.get("config", {}).get("model", {}).get("family")
        best_info = {"number": best.number, "val_acc": best.value, "family": fam,
                     "train_seconds": best.user_attrs.get("train_seconds")}
    except ValueError:
        best_info = {}
    return {"trials": ends, "best": best_info}


def search_commands(args: argparse.Namespace, out: Path) -> tuple[list[str], list[str]]:
    """The ``cifar-search run`` and ``cifar-search retrain best`` command lines."""
    base = [sys.executable, "-m", "cifar_search"]
    common = ["--study", args.study, "--storage", f"sqlite:///{out / f'{args.study}.db'}"]
    if args.data:
        common += ["--data", args.data]
    if args.tiny:  # the same two commands, seconds on a CPU
        run_extra = ["--budget", "smoke", "--timeout", str(min(args.timeout, 20)), "--trials",
                     "1", "--epochs", "1", "--train-subset", str(args.tiny_images),
                     "--enqueue-presets", "none", "--device", "cpu"]
        retrain_extra = ["--epochs", "1", "--device", "cpu", "--no-export"]
    else:
        run_extra = ["--budget", "gpu", "--timeout", f"{args.timeout:g}"]
        retrain_extra = []
    run_cmd = [*base, "run", *common, *run_extra, "--no-progress", *args.run_args]
    retrain_cmd = [*base, "retrain", "best", *common, "--out", str(out / "retrain-best"),
                   *retrain_extra, "--no-progress"]
    return run_cmd, retrain_cmd


def cmd_search(args: argparse.Namespace) -> int:
    """``--step run`` and ``--step retrain`` split the two commands over two calls (a device
    call lasts 10 minutes at most); ``run.json`` under ``--out`` links them."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    db, log, run_json = out / f"{args.study}.db", out / "search.log", out / "run.json"
    run_cmd, retrain_cmd = search_commands(args, out)
    if args.step in ("all", "run"):
        if db.exists():
            print(f"bench_gpu.py search: {db} exists (the search would resume it): remove it "
                  "or pick another --out", file=sys.stderr)
            return 2
        rc_run, run_s = timed(run_cmd, log)
        run_json.write_text(json.dumps({"rc": rc_run, "seconds": run_s, "cmd": run_cmd}))
        if rc_run != 0:
            print(f"bench_gpu.py search: cifar-search run exited {rc_run}; see {log}",
                  file=sys.stderr)
            return 1
        if args.step == "run":
            print(f"cifar-search run: {run_s:.0f} s; now: bench_gpu.py search --step retrain")
            return 0
    if not run_json.exists():
        print(f"bench_gpu.py search: no {run_json}: run --step run first", file=sys.stderr)
        return 2
    run_s = float(json.loads(run_json.read_text())["seconds"])
    retrain_dir = out / "retrain-best"
    rc_retrain, retrain_s = timed(retrain_cmd, log)
    if rc_retrain != 0:
        print(f"bench_gpu.py search: cifar-search retrain exited {rc_retrain}; see {log}",
              file=sys.stderr)
        return 1
    storage = f"sqlite:///{db}"
    metrics = json.loads((retrain_dir / "metrics.json").read_text(encoding="utf-8"))
    summary = study_summary(storage, args.study)
    best = summary["best"]
    train_s = metrics.get("train_seconds") or [math.nan]
    acc = float(metrics["test_acc_mean"])
    device = metrics.get("device", {})
    trials = ", ".join(f"{k} {v}" for k, v in sorted(summary["trials"].items()))
    val = best.get("val_acc")
    text = "\n".join([
        f"# search {args.timeout:g} s + retrain best, {datetime.date.today()}"
        f"{' (--tiny: CPU smoke run, not a result)' if args.tiny else ''}\n",
        f"- device: {device.get('device_name', '?')} ({device.get('precision', '?')})",
        f"- commands (log: {log}):",
        f"  - `cifar-search {' '.join(run_cmd[3:])}`",
        f"  - `cifar-search {' '.join(retrain_cmd[3:])}`\n",
        "| step | wall time (s) | result |",
        "| --- | ---: | --- |",
        f"| cifar-search run | {run_s:.0f} | trials: {trials}; best trial "
        f"{best.get('number', '-')} ({best.get('family', '-')}), val acc "
        f"{'-' if val is None else f'{100 * val:.2f}%'} |",
        f"| cifar-search retrain best | {retrain_s:.0f} | test acc {100 * acc:.2f}% after "
        f"{metrics.get('epoch_budget')} epochs; training {train_s[0]:.0f} s of the wall time |",
        "",
        f"- total {run_s + retrain_s:.0f} s; retrain target <= 120 s: "
        f"{'met' if retrain_s <= 120 else 'missed'}; test accuracy target >= 95%: "
        f"{'met' if acc >= 0.95 else 'missed'}",
    ])
    record = {"mode": "search", "run_seconds": run_s, "retrain_seconds": retrain_s,
              "retrain_train_seconds": train_s, "test_acc": acc, "study": summary,
              "commands": [run_cmd, retrain_cmd], "date": str(datetime.date.today()),
              "tiny": args.tiny, "argv": args.argv}
    emit(text, record, args)
    return 0


# ---- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[-4:]))
    sub = p.add_subparsers(dest="mode", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None,
                        help="cifar10.npz or cifar-10-batches-py/")
        sp.add_argument("--tiny", action="store_true",
                        help=f"CPU, {TINY_IMAGES} images, 1 epoch: proves the script runs")
        sp.add_argument("--tiny-images", type=int, default=TINY_IMAGES,
                        help="training (and test) images with --tiny")
        sp.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")

    def training(sp: argparse.ArgumentParser, epochs: int | None) -> None:
        common(sp)
        sp.add_argument("--device", default="auto", help="auto | cuda | cuda:i | cpu")
        sp.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
        sp.add_argument("--compile", action="store_true",
                        help="torch.compile (once per architecture, reused across seeds)")
        sp.add_argument("--epochs", type=int, default=epochs, help="epoch budget (the schedule "
                        "spans it; default: " + ("the preset's" if epochs is None else str(epochs))
                        + ")")
        sp.add_argument("--seed", type=int, default=0, help="first seed")
        sp.add_argument("--target", type=float, default=0.94, help="test accuracy, fraction")
        sp.add_argument("--warmup", type=int, default=1, help="untimed one-epoch runs first")

    f = sub.add_parser("fast94", help="fast94: test accuracy over seeds, time to 94%%")
    training(f, None)
    f.add_argument("--seeds", type=int, default=5, help="seeds (>= 5 for the record)")
    f.set_defaults(func=cmd_fast94)
    d = sub.add_parser("davidnet", help="davidnet: images/s, MFU, accuracy in 24 epochs")
    training(d, 24)
    d.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS,
                   help="peak bf16 TFLOP/s of the device (H100 SXM dense: 989; PCIe: 756)")
    d.set_defaults(func=cmd_davidnet)
    s = sub.add_parser("search", help="cifar-search run (timed) then retrain best (timed)")
    common(s)
    s.add_argument("--timeout", type=float, default=480.0, help="seconds given to the search")
    s.add_argument("--study", default="gpu8")
    s.add_argument("--out", default="bench-out/search", help="folder for the study and runs")
    s.add_argument("--step", choices=("all", "run", "retrain"), default="all",
                   help="both commands, or one (the retrain reads the run's run.json)")
    s.add_argument("--run-args", nargs=argparse.REMAINDER, default=[],
                   help="extra arguments for cifar-search run (must come last)")
    s.set_defaults(func=cmd_search)
    args = p.parse_args(argv)
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
