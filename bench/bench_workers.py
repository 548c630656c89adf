"""Workers and storages: what coordinating several search processes through Optuna costs.

``storage``: N processes run the search machinery against one shared storage, training replaced
by a synthetic learning curve (as in ``bench_overhead.py``: the default space through
``suggest_config``, TPE with the constant liar, Hyperband, a ``trial.report`` per epoch, the
user attributes a real trial writes). Every second is storage, sampler
and lock waiting. Storages: SQLite as Optuna opens it by default, SQLite as cifar-search opens
it (WAL, 60 s busy timeout, back-off), Optuna's journal file, and a local PostgreSQL.

``workers``: the real ``cifar-search run --workers N`` (local default SQLite storage) on a
generated data set, a tiny fixed model, 1 epoch of 256 images per trial: trials per hour, and
the seconds per trial that are not training.

    python bench/bench_workers.py storage --workers 1,4 --trials 200
    python bench/bench_workers.py workers --workers 1,2,4 --trials 24
    python bench/bench_workers.py all            # both, markdown on stdout

PostgreSQL rows need ``$CIFAR_SEARCH_TEST_POSTGRES`` (``eval "$(bash .ci/postgres.sh start)"``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
from bench_overhead import synthetic_objective  # this folder: the same synthetic trial
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from cifar_search.search.budget import BUDGETS
from cifar_search.search.storage import open_storage
from cifar_search.search.study import StopAtTotal, make_pruner, make_sampler

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 16  # reported per full trial (the gpu budget)
STORAGES = ("sqlite-optuna-default", "sqlite-cifar-search", "journal-file", "postgresql")
TINY_SPACE = REPO / "cifar_search" / "search" / "spaces" / "tiny.toml"


def make_storage(kind: str, where: str) -> optuna.storages.BaseStorage:
    if kind == "sqlite-optuna-default":
        return optuna.storages.RDBStorage(f"sqlite:///{where}")
    if kind == "journal-file":
        return JournalStorage(JournalFileBackend(where))
    return open_storage(where if kind == "postgresql" else f"sqlite:///{where}",
                        heartbeat_interval=30)


def storage_worker(kind: str, where: str, name: str, total: int, seed: int,
                   out: Any) -> None:
    """One process: optimize until the study holds ``total`` trials; count what went wrong."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = make_storage(kind, where)
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=make_sampler("tpe", seed, parallel=True),
        pruner=make_pruner("hyperband", BUDGETS["gpu"].override(epochs=EPOCHS)))
    raised: list[str] = []
    mine = [0]

    def count(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        mine[0] += 1

    start = time.perf_counter()
    while len(raised) < 20:
        try:
            study.optimize(synthetic_objective(EPOCHS), catch=(Exception,),
                           callbacks=[StopAtTotal(total), count])
            break
        except Exception as exc:  # a storage error outside the objective stops optimize
            raised.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    out.put({"seconds": time.perf_counter() - start, "trials": mine[0], "raised": raised})


def bench_storage(kind: str, workers: int, total: int, tmp: Path) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    if kind == "postgresql":
        where = os.environ.get("CIFAR_SEARCH_TEST_POSTGRES", "")
        if not where:
            return {"skipped": "no $CIFAR_SEARCH_TEST_POSTGRES"}
    else:
        where = str(tmp / f"{name}.{'log' if kind == 'journal-file' else 'db'}")
    storage = make_storage(kind, where)
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=storage_worker, args=(kind, where, name, total, i, out))
             for i in range(workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    numbers = [t.number for t in trials]
    row = {
        "finished": len(finished), "failed": sum(t.state == TrialState.FAIL for t in trials),
        "running_left": sum(t.state == TrialState.RUNNING for t in trials),
        "duplicates": len(numbers) - len(set(numbers)), "wall": wall,
        "per_trial": sum(r["seconds"] for r in results) / max(1, len(finished)),
        "raised": [e for r in results for e in r["raised"]],
    }
    if kind == "postgresql":
        optuna.delete_study(study_name=name, storage=storage)
    return row


def run_storage(worker_counts: list[int], total: int, kinds: list[str]) -> str:
    lines = [
        f"Storage + sampler seconds per trial (no training; TPE with constant liar, Hyperband, "
        f"{EPOCHS} reports per full trial), {total} trials shared by N processes:\n",
        "| storage | workers | finished | failed | errors raised out of optimize | "
        "s per trial (process time) | trials/s (all workers) | heartbeat |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for n in worker_counts:
                r = bench_storage(kind, n, total, Path(tmp))
                if "skipped" in r:
                    lines.append(f"| {kind} | {n} | - | - | skipped: {r['skipped']} | | | |")
                    continue
                raised = f"{len(r['raised'])}" + (f" ({r['raised'][0]})" if r["raised"] else "")
                beat = "no" if kind in ("journal-file", "sqlite-optuna-default") else "yes"
                lines.append(f"| {kind} | {n} | {r['finished']} | {r['failed']} | {raised} | "
                             f"{r['per_trial']:.3f} | {r['finished'] / r['wall']:.1f} | {beat} |")
                print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def run_workers(worker_counts: list[int], total: int) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    from datagen import write_npz

    lines = [
        f"`cifar-search run --workers N --trials {total}` on a 2,000-image generated set, "
        "plain_cnn width 16, 1 epoch of 256 images per trial, `--budget smoke`, local SQLite:\n",
        "| workers | threads each | wall s (incl. start-up) | trials/hour (first start to "
        "last end) | mean trial s | non-training s per trial |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_npz(Path(tmp) / "cifar10.npz", n_train=2000, n_test=200, seed=0)
        for n in worker_counts:
            url = f"sqlite:///{tmp}/w{n}.db"
            cmd = [sys.executable, "-m", "cifar_search", "run", "--study", "w", "--storage", url,
                   "--workers", str(n), "--trials", str(total), "--budget", "smoke",
                   "--epochs", "1", "--train-subset", "256", "--space", str(TINY_SPACE), "--data",
                   str(data), "--device", "cpu", "--pruner", "none", "--no-progress"]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"workers={n} failed ({proc.returncode}):\n{proc.stderr}")
            trials = optuna.load_study(study_name="w", storage=url).trials
            done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            first = min(t.datetime_start for t in done if t.datetime_start)
            last = max(t.datetime_complete for t in done if t.datetime_complete)
            span = (last - first).total_seconds()
            durations = [(t.datetime_complete - t.datetime_start).total_seconds()  # type: ignore[operator]
                         for t in done]
            train = [float(t.user_attrs.get("train_seconds", 0.0)) for t in done]
            mean = sum(durations) / len(durations)
            lines.append(f"| {n} | {max(1, (os.cpu_count() or 1) // n)} | {wall:.1f} | "
                         f"{3600 * len(done) / span:.0f} | {mean:.2f} | "
                         f"{mean - sum(train) / len(train):.2f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("storage", "workers", "all"))
    ap.add_argument("--workers", default=None, help="comma-separated worker counts")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--storages", default=",".join(STORAGES))
    args = ap.parse_args()
    counts = [int(n) for n in args.workers.split(",")] if args.workers else None
    print(f"{os.cpu_count()} CPU cores, optuna {optuna.__version__}\n")
    if args.what in ("storage", "all"):
        print(run_storage(counts or [1, 4], args.trials or 200, args.storages.split(",")), "\n")
    if args.what in ("workers", "all"):
        print(run_workers(counts or [1, 2, 4], args.trials or 24))


if __name__ == "__main__":
    main()
