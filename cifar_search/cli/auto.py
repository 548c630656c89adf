"""``cifar-search auto --time T``: one wall-clock budget, a tested and exported model inside it.

See :mod:`cifar_search.search.auto` for the steps and :mod:`cifar_search.search.auto_plan` for the
plan.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from cifar_search.cli._common import add_data_args, add_device_args, process_age

EPILOG = """\
T covers everything: loading the data, measuring this device, the search, the final training
on all 50,000 training images, the test evaluation and the exports. The plan is printed first.
A search runs only where 30% of T can give each finalist of its top rung the strongest
preset's own recipe (fast94's 10 epochs over the 45,000-image split), with two lower rungs of
the same total time: about twenty fast94 trainings, hours of a 2-core CPU, minutes of a GPU.
Below that, a short search ranks configs by what learns fastest in seconds, not by what the
final training will reach, and the plan trains the strongest preset scaled to fill T (wider if
T holds more than three times its own epochs). With a search, every preset and variants of the
strongest one and of the best other go through successive halving, and the winner on the
validation split (ahead of the strongest preset by more than the split's noise) is trained for
the rest. The test set is used once, at the end.

The study (default 'auto', in studies/auto.db) is an ordinary study: status, trials, report,
the dashboard and retrain read it. Ctrl-C stops; the same command again goes on with what is
left of T.

examples:
  cifar-search auto --time 10m
  cifar-search auto --time 2h --out runs/best --data ~/data/cifar10.npz
"""


def register(sub: Any) -> None:
    p = sub.add_parser("auto", help="search and final training planned in one time budget",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time", required=True, metavar="T",
                   help="wall-clock budget: 600, 90s, 10m, 2h or 1h30m")
    p.add_argument("--study", default="auto", help="study name (default: auto)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<study>/auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and the final "
                   "training (default: 0)")
    p.add_argument("--presets", metavar="A,B", help="candidates (default: every preset)")
    p.add_argument("--mlflow", metavar="URI",
                   help="also log to MLflow: one run per rung trial (params, candidate, rung, "
                   "every epoch's metrics, the validation score, how it ended), e.g. "
                   "sqlite:///mlflow.db (needs cifar-search[mlflow])")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard runs: DIR/<study>/trial-N for every rung trial "
                   "(needs cifar-search[tensorboard])")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_args(p)
    add_device_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic() - process_age()
    from tqdm import tqdm

    from cifar_search.search.auto import AutoSettings, run_auto
    from cifar_search.search.auto_plan import parse_duration
    from cifar_search.train.runtime import configure_cpu_threads
    from cifar_search.train.trainer import EpochMetrics

    seconds = parse_duration(args.time)
    presets = None if args.presets is None else tuple(
        n.strip() for n in args.presets.split(",") if n.strip())
    configure_cpu_threads()
    settings = AutoSettings(time=seconds, study=args.study, storage=args.storage, out=args.out,
                            data=args.data, device=args.device, precision=args.precision,
                            seed=args.seed, presets=presets, started=started,
                            mlflow=args.mlflow, tensorboard=args.tensorboard)
    bar: Any = None

    def say(line: str) -> None:
        (tqdm.write if bar is not None else print)(line)
        sys.stdout.flush()

    def on_epoch(epochs: int, epoch: int, m: EpochMetrics) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=epochs, unit="epoch", file=sys.stderr, disable=args.no_progress,
                       desc="final", dynamic_ncols=True)
        bar.update(1)
        bar.set_postfix_str(f"train {100 * m.train_acc:.1f}% loss {m.train_loss:.3f}")

    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the lines above say the same
    try:
        result = run_auto(settings, say=say, on_epoch=on_epoch)
    finally:
        optuna.logging.set_verbosity(verbosity)
        if bar is not None:
            bar.close()
    r = result.retrain
    tta = r.metrics.get("config", {}).get("tta", "none")
    views = (f" with TTA {tta} (model_tta.onnx), {100 * r.test_acc_single_mean:.2f}% one view "
             "(model.onnx)" if tta != "none" else "")
    print(f"test accuracy {100 * result.test_acc:.2f}%{views}: {result.winner}, {r.epochs} "
          f"epochs on {r.train_size:,} images; {r.test_size:,} test images, measured once")
    print(f"device {r.device['device_name']} ({r.device['precision']}), seed {args.seed}; "
          f"{result.wall_s:.0f} s of the {seconds:.0f} s budget spent")
    print(f"run folder {result.run_dir} (MODEL.md explains it); study {args.study!r}")
    return 0
