"""What stopping and resuming a training costs, and whether the resumed one is the same training.

1. ``--cost``: for every preset at its own width, the size of its resume file and the seconds
   to write it (``Checkpoint.save`` of the trainer's state after a one-batch epoch: weights,
   optimiser, schedule, EMA / lookahead copies, generators), so the write interval
   (``train.resume.EVERY_S``, 60 s) can be set against it.
2. ``--stop``: ``cifar-search retrain --preset P --epochs E`` run twice through the real CLI on
   the real data: once straight through, once stopped with SIGINT (Ctrl-C) as soon as its resume
   file holds epoch ``--after`` (with ``--inside``: a state taken inside an epoch after it),
   then the same command again. Prints both runs' test accuracy (with TTA and one view),
   per-epoch training loss and wall time.

    python bench/bench_resume.py --cost --data /tmp/data/cifar10.npz
    python bench/bench_resume.py --stop --preset fast94 --epochs 3 --after 1 --data ...
    python bench/bench_resume.py --stop --inside --preset rdfia-alexnet --epochs 4 --after 1
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cifar_search.train.data import load_cifar10  # noqa: E402
from cifar_search.train.loader import device_arrays  # noqa: E402
from cifar_search.train.models import count_params, create_model  # noqa: E402
from cifar_search.train.presets import PRESETS  # noqa: E402
from cifar_search.train.recipe import train_loader  # noqa: E402
from cifar_search.train.resume import EVERY_S, Checkpoint, State  # noqa: E402
from cifar_search.train.runtime import configure_cpu_threads, resolve_runtime  # noqa: E402
from cifar_search.train.trainer import train  # noqa: E402


def cost(data: str | None, device: str) -> None:
    runtime = resolve_runtime(device, "auto")
    arrays = load_cifar10(data)
    x, y = device_arrays(arrays.train_x[:16], arrays.train_y[:16], runtime.device)
    print(f"device {runtime.describe()['device_name']}, torch {torch.__version__}\n")
    print("| preset | parameters | resume file (MB) | write (s) |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset in PRESETS.items():
            # 16 images a batch: the state's size does not depend on the batch
            cfg = preset.config.replace(epochs=2, batch_size=16)
            states: list[State] = []
            model = create_model(cfg.model)
            loader = train_loader(cfg, x, y, runtime, seed=0)
            train(model, cfg, loader, None, runtime, seed=0,
                  on_state=lambda e, s, kept=states: kept.append(s()))
            ckpt = Checkpoint(Path(tmp) / f"{name}.pt", {"preset": name}, every_s=0)
            start = time.perf_counter()
            ckpt.save(1, states[0])
            seconds = time.perf_counter() - start
            mb = ckpt.path.stat().st_size / 1e6
            print(f"| {name} | {count_params(model):,} | {mb:.1f} | {seconds:.2f} |")


def retrain_cmd(preset: str, epochs: int, out: Path, data: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "cifar_search", "retrain", "--preset", preset, "--epochs",
           str(epochs), "--out", str(out), "--no-export", "--no-progress", "--seed", "0"]
    return cmd + (["--data", data] if data else [])


def run(cmd: list[str], stop_after: int | None = None, resume_file: Path | None = None,
        inside: bool = False) -> tuple[float, str, int]:
    """Run ``cmd``; with ``stop_after``, SIGINT once ``resume_file`` holds that epoch (with
    ``inside``: a state taken inside an epoch after it)."""
    start = time.perf_counter()
    # SIGINT back to its default in the child: a shell without job control starts a command
    # sent to the background (`cmd &`) with SIGINT ignored, and the child would inherit that
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if stop_after is not None and resume_file is not None:
        while proc.poll() is None:
            epoch, in_epoch = _epoch(resume_file) if resume_file.is_file() else (0, False)
            if epoch >= stop_after and (in_epoch or not inside):
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(1)
    out, _ = proc.communicate()
    return time.perf_counter() - start, out, proc.returncode


def _epoch(path: Path) -> tuple[int, bool]:
    """The epochs complete in a resume file, and whether it was taken inside an epoch."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return int(saved["epoch"]), saved["train"].get("partial") is not None
    except Exception:  # written as we read: try again
        return 0, False


def summary(folder: Path) -> dict[str, Any]:
    m = json.loads((folder / "metrics.json").read_text())
    return {"test_acc": m["test_acc"][0], "test_acc_single": m["test_acc_single"][0],
            "train_loss": [round(e["train_loss"], 6) for e in m["epochs"]]}


def stop(preset: str, epochs: int, after: int, data: str | None, work: Path,
         inside: bool = False) -> None:
    whole_dir, stopped_dir = work / "whole", work / "stopped"
    whole_s, out, rc = run(retrain_cmd(preset, epochs, whole_dir, data))
    assert rc == 0, out
    first_s, out1, rc1 = run(retrain_cmd(preset, epochs, stopped_dir, data), stop_after=after,
                             resume_file=stopped_dir / "resume" / "seed-0.pt", inside=inside)
    print(f"stopped run: exit {rc1} after {first_s:.0f} s; last lines:\n"
          + "\n".join(out1.strip().splitlines()[-2:]))
    if rc1 == 0:  # it finished before its resume file held epoch `after`: nothing was tested
        raise SystemExit(f"the run ended before it could be stopped after epoch {after} (a "
                         f"resume file is written about every {EVERY_S:.0f} s): give more "
                         "--epochs or a later --after")
    second_s, out2, rc2 = run(retrain_cmd(preset, epochs, stopped_dir, data))
    assert rc2 == 0, out2
    went_on = [line for line in out2.splitlines() if "going on" in line]
    print("\n".join(went_on))
    a, b = summary(whole_dir), summary(stopped_dir)
    print(f"\n{preset} x {epochs} epochs, seed 0, torch {torch.__version__}\n")
    print("| run | wall (s) | test acc (TTA) | single view | training loss per epoch |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| straight through | {whole_s:.0f} | {100 * a['test_acc']:.2f}% | "
          f"{100 * a['test_acc_single']:.2f}% | {a['train_loss']} |")
    label = (went_on[0].split("going on ", 1)[1].split(", from")[0] if went_on
             else f"after epoch {after}")
    print(f"| stopped, went on {label} | {first_s:.0f} + {second_s:.0f} | "
          f"{100 * b['test_acc']:.2f}% | {100 * b['test_acc_single']:.2f}% | "
          f"{b['train_loss']} |")
    print(f"\nidentical: {a == b}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cost", action="store_true")
    p.add_argument("--stop", action="store_true")
    p.add_argument("--preset", default="fast94")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--after", type=int, default=1)
    p.add_argument("--inside", action="store_true",
                   help="stop at a state taken inside an epoch after --after epochs")
    p.add_argument("--data")
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path)
    args = p.parse_args()
    configure_cpu_threads()
    if args.cost:
        cost(args.data, args.device)
    if args.stop:
        with tempfile.TemporaryDirectory() as tmp:
            stop(args.preset, args.epochs, args.after, args.data, args.work or Path(tmp),
                 args.inside)


if __name__ == "__main__":
    main()
