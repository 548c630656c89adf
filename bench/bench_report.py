"""How long ``cifar-search report`` takes on a large study: in memory and from SQLite.

Builds a study of ``--trials`` synthetic trials shaped like real ones (complete, pruned and
failed; a learning curve of ``--epochs`` points and the user attributes the objective writes),
then times :func:`cifar_search.report.build_report` on it twice: on an in-memory storage (the
page itself) and on a SQLite file opened as ``report`` opens it (Optuna's reading included).

    python bench/bench_report.py --trials 3000 --epochs 20

Prints one markdown table row per storage.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from cifar_search.report import build_report
from cifar_search.search.storage import open_storage

FAMILIES = ("resnet9", "resnet", "airbench", "plain_cnn")


def synthetic_trial(number: int, rng: random.Random, epochs: int) -> FrozenTrial:
    roll = rng.random()
    state = TrialState.COMPLETE if roll < 0.6 else TrialState.PRUNED if roll < 0.9 else (
        TrialState.FAIL)
    n = epochs if state == TrialState.COMPLETE else rng.randint(1, epochs - 1)
    ceiling = 0.6 + 0.35 * rng.random()
    accs = [ceiling * (1 - math.exp(-(e + 1) / 4)) for e in range(n)]
    curve = [{"epoch": e + 1, "train_loss": 2 - a, "train_acc": a, "val_loss": 2.1 - a,
              "val_acc": a, "lr": 0.1, "seconds": 3.0, "images_per_s": 15000.0}
             for e, a in enumerate(accs)]
    attrs: dict[str, Any] = {
        "config": {"model": {"family": rng.choice(FAMILIES)}, "epochs": epochs},
        "seed": number, "n_params": 2_000_000, "flops": 60_000_000, "curve": curve,
        "train_seconds": 3.0 * n, "images_per_s": 15000.0, "epochs_run": n, "device": "cpu",
        "end": {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(state, "oom"),
        "end_epoch": n}
    return create_trial(
        state=state, params={"lr": 10 ** rng.uniform(-3, 0), "family": attrs["config"]["model"][
            "family"]},
        distributions={"lr": FloatDistribution(1e-3, 1.0, log=True),
                       "family": CategoricalDistribution(FAMILIES)},
        user_attrs=attrs, intermediate_values={e + 1: a for e, a in enumerate(accs)},
        **({"value": accs[-1]} if state == TrialState.COMPLETE else {}))


def timed(storage: optuna.storages.BaseStorage, out: Path) -> float:
    start = time.perf_counter()
    build_report(storage, "big", out)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    rng = random.Random(0)
    trials = [synthetic_trial(i, rng, args.epochs) for i in range(args.trials)]
    with tempfile.TemporaryDirectory() as tmp:
        memory = optuna.storages.InMemoryStorage()
        sqlite = open_storage(f"sqlite:///{tmp}/big.db")
        for storage in (memory, sqlite):
            optuna.create_study(storage=storage, study_name="big",
                                direction="maximize").add_trials(trials)
        print("| storage | trials | epochs a trial | build_report (s) | page (MB) |")
        print("| --- | --- | --- | --- | --- |")
        for name, storage in (("in memory", memory), ("SQLite", sqlite)):
            out = Path(tmp) / f"{name}.html"
            seconds = timed(storage, out)
            print(f"| {name} | {args.trials} | {args.epochs} | {seconds:.1f} | "
                  f"{out.stat().st_size / 1e6:.1f} |")


if __name__ == "__main__":
    main()
