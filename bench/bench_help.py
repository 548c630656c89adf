"""Wall time of ``cifar-search --help`` and of every command's ``--help``, as a user waits for
it: a fresh interpreter each time (``python -m cifar_search ... --help``), several runs, min and
median. ``--src DIR`` times another checkout (e.g. a ``git worktree`` of an older commit).

    python bench/bench_help.py --runs 5
    git worktree add /tmp/before a03bae0 && python bench/bench_help.py --src /tmp/before
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(argv: list[str], src: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    # cwd outside any checkout: `python -m` puts the cwd first on sys.path, before PYTHONPATH
    subprocess.run([sys.executable, "-m", "cifar_search", *argv], env=env, check=True,
                   cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=REPO, help="checkout to time (default: this)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--commands", default=",run,auto,retrain,status,dashboard",
                   help="comma-separated; empty: the top-level --help")
    args = p.parse_args(argv)
    print("| command | runs | min (s) | median (s) | load before | checkout |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for cmd in args.commands.split(","):
        load = os.getloadavg()[0]
        argv_ = [cmd, "--help"] if cmd else ["--help"]
        try:
            times = [timed(argv_, args.src) for _ in range(args.runs)]
        except subprocess.CalledProcessError:
            print(f"| {cmd or '(top level)'} | - | no such command | - | {load:.2f} | "
                  f"{args.src} |")
            continue
        print(f"| {cmd or '(top level)'} | {args.runs} | {min(times):.2f} | "
              f"{statistics.median(times):.2f} | {load:.2f} | {args.src} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
