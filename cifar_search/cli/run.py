"""``cifar-search run``: the search. Start it, walk away, kill it, run it again to resume."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from cifar_search.cli._common import (
    MAX_SEED,
    MIN_TRAIN_SUBSET,
    add_data_args,
    add_device_args,
    add_study_args,
    non_negative_int,
    positive_float,
    positive_int,
    seed_int,
    train_subset_int,
)
from cifar_search.errors import ConfigError

if TYPE_CHECKING:
    from cifar_search.search.launch import SearchSettings

EPILOG = """\
--trials N means the study ends with N finished (complete or pruned) trials in TOTAL, across
every run and every worker: running again with the same --study resumes and runs only what is
missing. Ctrl-C closes the running trial as interrupted; the next run retries it.

--workers N starts N worker processes on this machine (one per visible GPU by default with
--workers auto; on CPU the cores are split between them) that share the study through its
storage, with one progress display; Ctrl-C stops them all. Processes on other machines join the
same study by running the same command with the same --storage (PostgreSQL): see
docs/distributed.md.

examples:
  cifar-search run --trials 200
  cifar-search run --budget cpu --trials 12 --data ~/data/cifar10.npz
  cifar-search run --study small --space small --enqueue-presets davidnet,fast94
  cifar-search run --objectives accuracy,params --sampler nsga2 --trials 100
  cifar-search run --workers auto                  # one worker per GPU
  cifar-search run --budget cpu --workers 2        # CPU: one core each
  cifar-search run --storage postgresql://user:pw@db/optuna --study big   # many machines
"""


# the names cifar_search.search.study accepts (a test keeps them equal), here so that --help and a
# typo need no optuna import
SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2")
PRUNERS = ("hyperband", "median", "percentile", "halving", "wilcoxon", "none")


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="search (resumable)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(p)
    p.add_argument("--trials", type=positive_int, default=200,
                   help="finished trials the study should hold in total, >= 1 (default: 200)")
    p.add_argument("--patience", type=positive_int, metavar="N",
                   help="stop once the best value has not improved in N finished trials "
                   "(default: off)")
    p.add_argument("--timeout", type=positive_float,
                   help="stop starting trials after this many seconds (> 0)")
    p.add_argument("--budget", choices=("gpu", "cpu", "smoke"),
                   help="per-trial budget (default: gpu with CUDA, else cpu)")
    p.add_argument("--epochs", type=positive_int,
                   help="epoch budget per trial, >= 1 (overrides)")
    p.add_argument("--train-subset", type=train_subset_int, metavar="N",
                   help=f"stratified training images per trial, >= {MIN_TRAIN_SUBSET} (one per "
                   "class) and at most the training split (overrides)")
    p.add_argument("--space", metavar="NAME|TOML",
                   help="narrow/fix the space: a shipped one (small, tiny, default_space) or a "
                   "TOML file (default: the whole space)")
    p.add_argument("--sampler", default=None, choices=SAMPLERS,
                   help="(default: tpe; nsga2 for several objectives)")
    p.add_argument("--pruner", default=None, choices=PRUNERS,
                   help="(default: hyperband for the gpu budget, median for cpu and smoke)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help=f"study seed in [0, {MAX_SEED}] (default: 0)")
    p.add_argument("--enqueue-presets", metavar="NAMES",
                   help="comma-separated presets to run first (warm start), 'all' or 'none' "
                   "(default: every preset within --max-params / --max-flops)")
    p.add_argument("--max-params", type=positive_float,
                   help="reject configs with more parameters (> 0)")
    p.add_argument("--max-flops", type=positive_float,
                   help="reject configs above these forward FLOPs per image, > 0 (budget default)")
    p.add_argument("--objectives", default="accuracy",
                   help="accuracy | accuracy,params | accuracy,flops | accuracy,time "
                   "(several: Pareto front, no pruning)")
    p.add_argument("--keep-top-k", type=non_negative_int, default=3,
                   help="checkpoints kept as artifacts, >= 0 (default: 3)")
    p.add_argument("--no-oom-retry", dest="oom_retry", action="store_false",
                   help="do not queue an out-of-memory trial again at a smaller batch size")
    p.add_argument("--heartbeat", type=positive_int, default=30,
                   help="seconds between heartbeats, >= 1; a trial silent for 4x this is retried")
    p.add_argument("--workers", type=_workers, default=None, metavar="N|auto",
                   help="worker processes on this machine, >= 1 (auto: one per visible GPU, "
                   "else 1; default: this process alone)")
    p.add_argument("--mlflow", metavar="URI",
                   help="also log to MLflow: one run per trial (params, every epoch's metrics, "
                   "how it ended), e.g. sqlite:///mlflow.db (needs cifar-search[mlflow])")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard runs: DIR/<study>/trial-N (per-epoch scalars, "
                   "hparams; needs cifar-search[tensorboard])")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_args(p)
    add_device_args(p)
    p.set_defaults(func=run)


def _workers(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def run(args: argparse.Namespace) -> int:
    from cifar_search.search.launch import SearchSettings, prepare_search
    from cifar_search.search.workers import raise_interrupt

    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    settings = SearchSettings(
        study=args.study, storage=args.storage, trials=args.trials, timeout=args.timeout,
        patience=args.patience,
        budget=args.budget, epochs=args.epochs, train_subset=args.train_subset,
        space=args.space, sampler=args.sampler, pruner=args.pruner, seed=args.seed,
        presets=_presets(args.enqueue_presets), max_params=args.max_params,
        max_flops=args.max_flops, objectives=objectives, keep_top_k=args.keep_top_k,
        heartbeat=args.heartbeat, oom_retry=args.oom_retry, data=args.data, device=args.device,
        precision=args.precision, progress=not args.no_progress, mlflow=args.mlflow,
        tensorboard=args.tensorboard,
    )
    if args.workers is not None:
        return _run_workers(settings, args.workers)
    search = prepare_search(settings)  # every check happens here, before any training
    print(search.describe(), file=sys.stderr)
    signal.signal(signal.SIGTERM, raise_interrupt)
    start = time.perf_counter()
    result = search.run()
    minutes = (time.perf_counter() - start) / 60
    print(search.summary(result, minutes), file=sys.stderr)
    if result.stopped_by_errors:
        last = result.last_error.strip()
        if "Traceback" in last:
            print(f"cifar-search run: error: {last.splitlines()[-1]}\nstopped after repeated "
                  f"trial errors; last traceback:\n{last}", file=sys.stderr)
        else:
            print(f"cifar-search run: error: {last}", file=sys.stderr)
        return 1
    if result.interrupted:
        print("cifar-search run: interrupted; run the same command again to resume.",
              file=sys.stderr)
        return 130
    return 0


def _run_workers(settings: SearchSettings, workers: int | str) -> int:
    from cifar_search.search.study import RunResult, count_finished
    from cifar_search.search.workers import WorkerPool, default_workers

    n = default_workers(settings.device) if workers == "auto" else int(workers)
    pool = WorkerPool.open(settings, n)  # every check, and the warm start, before any worker
    print(pool.describe(), file=sys.stderr)
    start = time.perf_counter()
    code = pool.run()
    minutes = (time.perf_counter() - start) / 60
    done = RunResult(finished=count_finished(pool.search.study), total=settings.trials)
    print(pool.search.summary(done, minutes), file=sys.stderr)
    if code == 130:
        print("cifar-search run: interrupted; run the same command again to resume.",
              file=sys.stderr)
    elif code:
        print(f"cifar-search run: error: a worker failed (exit {code}); see its lines above.",
              file=sys.stderr)
    return code


def _presets(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None  # the presets that fit the budget
    if text.strip() in ("", "none"):
        return ()
    from cifar_search.train.presets import PRESETS

    if text.strip() == "all":
        return tuple(PRESETS)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise ConfigError(f"unknown preset {unknown[0]!r} (known: {', '.join(PRESETS)}).")
    return names
