"""Does the search earn its compute? Three arms at one wall-clock budget T, test accuracy each.

1. ``auto``:   ``cifar-search auto --time T`` (search and final training planned inside T);
2. ``preset``: the best preset, fast94, retrained on all 50,000 images with the epochs that fill
   T (``retrain --preset fast94 --epochs E``). E is computed before the arm starts, outside its
   clock, by the arithmetic ``auto`` uses: fast94's speed measured on this machine, T less the
   test passes, the exports and the margin (``--preset-epochs N`` fixes it instead). It is the
   strongest fair baseline: what a user who knew this machine's speed would type;
3. ``today``:  ``run --budget cpu --timeout 0.7 T`` then ``retrain best`` with the epochs that
   fill the rest of T (from the best trial's measured images/s).

Every arm is the real CLI in a subprocess, in its own folder under ``--work``; wall time is the
whole arm (data loading, search, training, test evaluation, exports). Test accuracy is read from
the run folder's ``metrics.json`` (measured once per seed, by ``retrain``/``auto``). Each run
appends one JSON line to ``--results``; ``--table`` prints the markdown table of that file.

    python bench/bench_auto.py --arm preset --seed 0 --time 600 --data /work/data/cifar10.npz
    python bench/bench_auto.py --arm auto --seed 1 --time 600
    python bench/bench_auto.py --table              # markdown of bench/auto_results.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "bench" / "auto_results.jsonl"
RETRAIN_OVERHEAD_S = 60.0  # data load + test evaluation with TTA + exports, reference CPU
STARTUP_S = 10.0  # interpreter, imports and data loading of a retrain, reference CPU


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cifar_search", *args]


def run(cmd: list[str], cwd: Path, log: Path) -> tuple[int, float]:
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as fh:
        fh.write("+ " + " ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.call(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return rc, time.perf_counter() - start


def metrics_of(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"bench_auto: no {path}: the arm failed (see its log.txt)")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def preset_epochs(args: argparse.Namespace) -> int:
    """The epochs of ``args.preset`` that fill T on this machine, as ``auto`` plans them."""
    from cifar_search.search import auto_plan
    from cifar_search.train.data import load_cifar10
    from cifar_search.train.loader import device_arrays
    from cifar_search.train.presets import get_preset
    from cifar_search.train.runtime import configure_cpu_threads, resolve_runtime
    from cifar_search.train.throughput import measure

    configure_cpu_threads()
    cfg = get_preset(args.preset).config
    runtime = resolve_runtime("auto", "auto")
    arrays = load_cifar10(args.data)
    x, y = device_arrays(arrays.train_x[:2048], arrays.train_y[:2048], runtime.device)
    rate = measure(cfg, runtime, x, y)
    # the epochs whose predicted wall time comes closest to T, up to 4% over (as a user who
    # fills T by hand would pick them: a whole epoch is ~17% of T for fast94 on 2 cores)
    seconds = auto_plan.final_share(1.04 * args.time - STARTUP_S, args.time,
                                    runtime.device.type, len(arrays.test_y), rate.eval, cfg.tta)
    epochs = max(1, auto_plan.epochs_for(seconds, rate, len(arrays.train_y)))
    print(f"{args.preset}: {rate.train:,.0f} training images/s, {rate.eval:,.0f} evaluation "
          f"images/s here: {epochs} epochs fill {args.time} s", file=sys.stderr)
    return epochs


def arm_preset(args: argparse.Namespace, work: Path, log: Path) -> dict[str, Any]:
    out = work / "model"
    if args.preset_epochs is None:
        args.preset_epochs = preset_epochs(args)
    rc, wall = run(cli("retrain", "--preset", args.preset, "--epochs", str(args.preset_epochs),
                       "--seed", str(args.seed), "--out", str(out), "--data", args.data,
                       "--no-progress"), work, log)
    m = metrics_of(out)
    return {"rc": rc, "wall_s": wall, "test_acc": m["test_acc_mean"],
            "test_acc_single": m.get("test_acc_single_mean"),
            "detail": f"{args.preset}, {args.preset_epochs} epochs on 50,000 images"}


def arm_today(args: argparse.Namespace, work: Path, log: Path) -> dict[str, Any]:
    import optuna

    search_s = round(0.7 * args.time)
    storage = f"sqlite:///{work / 'today.db'}"
    rc1, wall1 = run(cli("run", "--budget", "cpu", "--timeout", str(search_s), "--study",
                         "today", "--storage", storage, "--seed", str(args.seed), "--data",
                         args.data, "--no-progress"), work, log)
    study = optuna.load_study(study_name="today", storage=storage)
    best = study.best_trial
    rate = float(best.user_attrs["images_per_s"])
    left = args.time - wall1 - RETRAIN_OVERHEAD_S
    epochs = max(1, math.floor(left * rate / 50_000))
    out = work / "model"
    rc2, wall2 = run(cli("retrain", "best", "--study", "today", "--storage", storage,
                         "--epochs", str(epochs), "--seed", str(args.seed), "--out", str(out),
                         "--data", args.data, "--no-progress"), work, log)
    m = metrics_of(out)
    ends: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        key = str(t.user_attrs.get("end", t.state.name.lower()))
        ends[key] = ends.get(key, 0) + 1
    return {"rc": max(rc1, rc2), "wall_s": wall1 + wall2, "test_acc": m["test_acc_mean"],
            "test_acc_single": m.get("test_acc_single_mean"),
            "detail": f"run --budget cpu --timeout {search_s} ({wall1:.0f} s; best trial "
                      f"{best.number} val {100 * float(best.value or 0):.2f}%, "
                      f"{best.user_attrs.get('config', {}).get('model', {}).get('family')}; "
                      f"{json.dumps(ends)}) + retrain best {epochs} epochs ({wall2:.0f} s)"}


def arm_auto(args: argparse.Namespace, work: Path, log: Path) -> dict[str, Any]:
    out = work / "model"
    rc, wall = run(cli("auto", "--time", str(args.time), "--out", str(out), "--seed",
                       str(args.seed), "--data", args.data, "--study", "auto", "--no-progress"),
                   work, log)
    m = metrics_of(out)
    plan = m.get("auto", {})
    return {"rc": rc, "wall_s": wall, "test_acc": m["test_acc_mean"],
            "test_acc_single": m.get("test_acc_single_mean"),
            "detail": plan.get("summary", ""), "rank_correlation": plan.get("rank_correlation")}


ARMS = {"auto": arm_auto, "preset": arm_preset, "today": arm_today}


def table(results: Path) -> str:
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    out = ["| arm | seed | T (s) | wall (s) | wall / T | test acc (TTA) | single view | "
           "what ran | when (UTC) | load before |", "|" + " --- |" * 10]
    for r in rows:
        single = "-" if r.get("test_acc_single") is None else f"{100 * r['test_acc_single']:.2f}%"
        out.append(f"| {r['arm']} | {r['seed']} | {r['time']} | {r['wall_s']:.0f} | "
                   f"{r['wall_s'] / r['time']:.3f} | {100 * r['test_acc']:.2f}% | {single} | "
                   f"{r['detail']} | {r['when']} | {r['load']:.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arm", choices=sorted(ARMS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time", type=int, default=600, help="wall-clock budget T, seconds")
    p.add_argument("--data", default=os.environ.get("CIFAR_SEARCH_DATA",
                                                    "/work/data/cifar10.npz"))
    p.add_argument("--preset", default="fast94")
    p.add_argument("--preset-epochs", type=int, default=None,
                   help="epochs of the preset arm (default: measured to fill T)")
    p.add_argument("--work", default="/tmp/bench_auto")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--table", action="store_true", help="print the results file as markdown")
    args = p.parse_args(argv)
    if args.table:
        print(table(args.results))
        return 0
    if args.arm is None:
        p.error("give --arm or --table")
    work = Path(args.work) / f"{args.arm}-seed{args.seed}-T{args.time}"
    work.mkdir(parents=True, exist_ok=False)
    load = os.getloadavg()[0]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    row = ARMS[args.arm](args, work, work / "log.txt")
    row = {"arm": args.arm, "seed": args.seed, "time": args.time, "when": when, "load": load,
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), **row}
    with args.results.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
