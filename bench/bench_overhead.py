"""The search machinery's own cost: sampler + storage seconds per trial, as a study grows.

Runs the real objective path minus training: the default space through ``suggest_config``, the
sampler and pruner ``cifar-search run`` uses, a SQLite study opened by ``open_storage`` (WAL,
heartbeats), per-epoch ``trial.report`` + ``should_prune``, and the user attributes a real
trial writes, when it writes them. Training is replaced by a synthetic learning
curve, so every second measured is overhead.

    python bench/bench_overhead.py --trials 1000 --epochs 16 --sampler tpe

Prints a markdown table of mean seconds per trial over the windows ending at 50, 200 and 1000.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from cifar_search.search.budget import BUDGETS
from cifar_search.search.space import DEFAULT_SPACE, suggest_config
from cifar_search.search.storage import open_storage
from cifar_search.search.study import StopAtTotal, count_finished, make_pruner, make_sampler
from cifar_search.train.runtime import versions


def synthetic_objective(epochs: int) -> Callable[[optuna.Trial], float]:
    """An objective that stores what ``cifar_search.search.objective.Objective`` stores, when it
    stores it (user attributes up front, a report + prune check per epoch, the curve and the
    end once), with a synthetic learning curve instead of training."""

    def run(trial: optuna.Trial) -> float:
        cfg = suggest_config(trial, DEFAULT_SPACE, epochs=epochs)
        for key, value in {"config": cfg.to_dict(), "seed": trial.number,
                           "device": {"device": "cpu"}, "versions": versions(), "budget": "gpu",
                           "worker": "bench", "n_params": 10**6, "flops": 10**8}.items():
            trial.set_user_attr(key, value)
        rng = random.Random(trial.number)
        ceiling, acc = rng.uniform(0.5, 0.95), 0.0
        curve: list[dict[str, float]] = []
        end = "complete"
        for epoch in range(1, epochs + 1):
            acc = ceiling * (1 - math.exp(-epoch / 3)) + rng.gauss(0, 0.01)
            curve.append({"epoch": epoch, "val_acc": acc, "train_loss": 1.0, "seconds": 1.0})
            trial.report(acc, epoch)
            if trial.should_prune():
                end = "pruned"
                break
        for key, value in {"curve": curve, "end": end, "end_epoch": len(curve),
                           "epochs_run": len(curve)}.items():
            trial.set_user_attr(key, value)
        if end == "pruned":
            raise optuna.TrialPruned()
        return acc

    return run


def stock_tpe(parallel: bool) -> optuna.samplers.TPESampler:
    """Optuna's TPESampler with the settings ``make_sampler("tpe")`` gives its own."""
    return optuna.samplers.TPESampler(seed=0, multivariate=True, group=True,
                                      constant_liar=parallel, n_startup_trials=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=BUDGETS["gpu"].epochs)
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--marks", default="50,200,1000")
    ap.add_argument("--parallel", action="store_true", help="TPE with the constant liar")
    ap.add_argument("--stock-tpe", action="store_true",
                    help="Optuna's own TPESampler with the same settings, not cifar-search's")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    marks = [int(m) for m in args.marks.split(",") if int(m) <= args.trials]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        storage = open_storage(url, heartbeat_interval=30)
        study = optuna.create_study(
            study_name="bench", storage=storage, direction="maximize",
            sampler=stock_tpe(args.parallel) if args.stock_tpe
            else make_sampler(args.sampler, 0, parallel=args.parallel),
            pruner=make_pruner("hyperband", BUDGETS["gpu"].override(epochs=args.epochs)),
        )
        stamps: list[float] = []

        def stamp(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            stamps.append(time.perf_counter())

        start = time.perf_counter()
        study.optimize(synthetic_objective(args.epochs), n_trials=args.trials,
                       callbacks=[StopAtTotal(args.trials), stamp])
        total = time.perf_counter() - start
        finished = count_finished(study)
    liar = " (constant liar)" if args.parallel else ""
    stock = " (Optuna's stock TPESampler)" if args.stock_tpe else ""
    print(f"sampler {args.sampler}{stock}{liar}, {args.epochs} epochs reported per full trial, "
          f"SQLite (WAL), {finished} finished trials in {total:.1f} s\n")
    print("| trials so far | mean s/trial in window | window | s since start |")
    print("| ---: | ---: | --- | ---: |")
    times = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
    for mark in marks:
        lo = max(0, mark - 25)
        window = times[lo:mark]
        print(f"| {mark} | {sum(window) / len(window):.3f} | trials {lo + 1}-{mark} "
              f"| {stamps[mark - 1] - start:.1f} |")


if __name__ == "__main__":
    main()
