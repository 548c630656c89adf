"""What each training trick of a preset is worth: the preset as shipped, then with one trick off.

Every variant is a real ``cifar-search train`` run (a subprocess) of ``--preset`` with one
``--config`` override, on the same stratified training subset and the fixed validation split
(never the test set), for each of ``--seeds``. The table gives the mean validation accuracy,
its change against the preset, the spread over seeds and the training time.

    python bench/bench_tricks.py --data cifar10.npz                     # fast94, all variants
    python bench/bench_tricks.py --train-subset 10000 --seeds 0,1 --variants base,no-lookahead
    python bench/bench_tricks.py --tiny --data small/cifar10.npz        # seconds, not a result

Markdown goes to stdout, ``--json FILE`` writes the rows.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# variant -> the TrainConfig keys it changes (merged into the preset, as `train --config` does)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": ("the preset as shipped", {}),
    "no-lookahead": ("lookahead off", {"lookahead": 0}),
    "no-norm-bias-lr": ("norm biases at the base lr (scale 1, not 64)",
                        {"optim": {"norm_bias_lr_scale": 1.0}}),
    "no-whiten-freeze": ("whitening bias trains throughout", {"model": {"whiten_bias_epochs": 0}}),
    "no-label-smoothing": ("label smoothing 0", {"optim": {"label_smoothing": 0.0}}),
    "random-flip": ("random flip instead of alternating", {"augment": {"flip": "random"}}),
    "no-nesterov": ("plain momentum instead of Nesterov", {"optim": {"nesterov": False}}),
    "no-tta": ("no test-time augmentation at evaluation", {"tta": "none"}),
}


def run_variant(args: argparse.Namespace, name: str, seed: int, work: Path) -> dict[str, Any]:
    override = VARIANTS[name][1]
    cfg_file = work / f"{name}.json"
    cfg_file.write_text(json.dumps(override))
    out = work / f"{name}-seed{seed}"
    cmd = [sys.executable, "-m", "cifar_search", "train", "--preset", args.preset, "--config",
           str(cfg_file), "--seed", str(seed), "--device", args.device, "--out", str(out),
           "--no-progress"]
    if args.data:
        cmd += ["--data", str(args.data)]
    if args.train_subset:
        cmd += ["--train-subset", str(args.train_subset)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench_tricks: {name} seed {seed} failed:\n{proc.stdout}\n{proc.stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"variant": name, "seed": seed, "val_acc": metrics["final"]["final_val_acc"],
            "train_seconds": sum(e["seconds"] for e in metrics["epochs"]),
            "wall_seconds": time.perf_counter() - start, "load_avg": os.getloadavg()[0],
            "device": metrics.get("device", {})}


def table(rows: list[dict[str, Any]], variants: list[str]) -> str:
    by = {v: [r for r in rows if r["variant"] == v] for v in variants}
    base = statistics.fmean(r["val_acc"] for r in by["base"]) if by.get("base") else None
    lines = ["| variant | what changes | seeds | val acc (mean) | vs preset | spread (max - min) "
             "| train s (mean) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for v in variants:
        accs = [r["val_acc"] for r in by[v]]
        mean = statistics.fmean(accs)
        delta = "" if base is None or v == "base" else f"{100 * (mean - base):+.2f}"
        spread = f"{100 * (max(accs) - min(accs)):.2f}" if len(accs) > 1 else "-"
        secs = statistics.fmean(r["train_seconds"] for r in by[v])
        lines.append(f"| {v} | {VARIANTS[v][0]} | {len(accs)} | {100 * mean:.2f}% | {delta} "
                     f"| {spread} | {secs:.0f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fast94")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--data", type=Path)
    p.add_argument("--device", default="auto")
    p.add_argument("--train-subset", type=int, help="stratified training images (default: all)")
    p.add_argument("--epochs", type=int, help="epoch budget (default: the preset's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--tiny", action="store_true",
                   help="256 images, 1 epoch, batch 32, CPU: proves the script runs")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    args.variant_list = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variant_list if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    args.seed_list = [int(s) for s in args.seeds.split(",") if s]
    if args.tiny:
        args.train_subset, args.epochs, args.batch_size, args.device = 256, 1, 32, "cpu"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variant_list:
            for seed in args.seed_list:
                rows.append(run_variant(args, name, seed, Path(tmp)))
                r = rows[-1]
                print(f"{name} seed {seed}: val acc {100 * r['val_acc']:.2f}%, "
                      f"{r['train_seconds']:.0f} s training", file=sys.stderr)
    device = rows[0]["device"] if rows else {}
    subset = f"{args.train_subset:,}" if args.train_subset else "all 45,000"
    tiny = " (--tiny: smoke run, not a result)" if args.tiny else ""
    print(f"# Tricks of `{args.preset}`, {datetime.date.today()}{tiny}\n")
    given = sys.argv[1:] if argv is None else argv
    print(f"- command: `python bench/bench_tricks.py {' '.join(given)}`")
    print(f"- device: {device.get('device_name', '?')} ({device.get('precision', '?')}, "
          f"channels_last={device.get('channels_last', '?')}); {subset} training images, the "
          f"fixed validation split; epochs {args.epochs or 'of the preset'}; seeds "
          f"{args.seeds}; {time.perf_counter() - start:.0f} s in all; load average "
          f"{min(r['load_avg'] for r in rows):.1f}-{max(r['load_avg'] for r in rows):.1f}\n")
    print(table(rows, args.variant_list))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "argv": sys.argv[1:]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
