"""Does the search earn its compute? Three arms at one wall-clock budget T, test accuracy each.

1. ``auto``:   ``cifar-search auto --time T`` (search and final training planned inside T);
2. ``preset``: the best preset, fast94, at its own width, retrained on all 50,000 images for T
   (``retrain --preset fast94 --time T``: its epochs planned from its speed on this machine and
   paced to end on T, as ``auto``'s final training is; ``--preset-epochs N`` gives
   ``retrain --preset fast94 --epochs N`` instead, the whole epochs a user would type);
3. ``today``:  ``run --budget cpu --timeout 0.7 T`` then ``retrain best --time`` the rest of T.

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
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "bench" / "auto_results.jsonl"


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


def arm_preset(args: argparse.Namespace, work: Path, log: Path) -> dict[str, Any]:
    out = work / "model"
    budget = (["--time", str(args.time)] if args.preset_epochs is None
              else ["--epochs", str(args.preset_epochs)])
    rc, wall = run(cli("retrain", "--preset", args.preset, *budget, "--seed", str(args.seed),
                       "--out", str(out), "--data", args.data, "--no-progress"), work, log)
    m = metrics_of(out)
    return {"rc": rc, "wall_s": wall, "test_acc": m["test_acc_mean"],
            "test_acc_single": m.get("test_acc_single_mean"),
            "detail": f"{args.preset}, {m['epoch_budget']} epochs ({m['epoch_budget_source']});"
                      f" images an epoch {m['data'].get('epoch_images_run')}"}


def arm_today(args: argparse.Namespace, work: Path, log: Path) -> dict[str, Any]:
    import optuna

    search_s = round(0.7 * args.time)
    storage = f"sqlite:///{work / 'today.db'}"
    rc1, wall1 = run(cli("run", "--budget", "cpu", "--timeout", str(search_s), "--study",
                         "today", "--storage", storage, "--seed", str(args.seed), "--data",
                         args.data, "--no-progress"), work, log)
    study = optuna.load_study(study_name="today", storage=storage)
    best = study.best_trial
    out = work / "model"
    rc2, wall2 = run(cli("retrain", "best", "--study", "today", "--storage", storage,
                         "--time", f"{args.time - wall1:.0f}", "--seed", str(args.seed),
                         "--out", str(out), "--data", args.data, "--no-progress"), work, log)
    m = metrics_of(out)
    epochs = m["epoch_budget"]
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
                   help="whole epochs of the preset arm (default: retrain --time T, paced)")
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
