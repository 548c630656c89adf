"""Helpers for tests that drive `cifar-search run` as real processes against a real storage."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState

# One tiny fixed model (the shipped space "tiny": plain CNN, width 16, one conv a stage): the
# search machinery is what these tests exercise, so each trial trains in a second on one core.
TINY_TOML = (Path(__file__).resolve().parents[1] / "cifar_search" / "search" / "spaces"
             / "tiny.toml"
             ).read_text()

# TINY_TOML with every other param the tiny model uses fixed too: batch norm, SGD at a small
# constant rate, no augmentation. Nothing is left to the sampler, so a trial can neither diverge
# nor end early, and it runs all its epochs: tests that interrupt, kill or watch a running
# process use it (with held_at_an_epoch, which holds the trial still while they act).
FIXED_TOML = TINY_TOML + """
[params.batch_norm]
value = true
[params.bn_momentum]
value = 0.1
[params.activation]
value = "relu"
[params.dropout]
value = 0.0
[params.head_scale]
value = 1.0
[params.normalization]
value = "cifar10"
[params.crop_padding]
value = 0
[params.padding_mode]
value = "zeros"
[params.resized_crop]
value = false
[params.flip]
value = "none"
[params.use_blur]
value = false
[params.use_cutout]
value = false
[params.use_erasing]
value = false
[params.use_mixup]
value = false
[params.use_cutmix]
value = false
[params.optimizer]
value = "sgd"
[params.lr_sgd]
value = 0.05
[params.momentum]
value = 0.9
[params.nesterov]
value = false
[params.use_weight_decay]
value = false
[params.schedule]
value = "constant"
[params.warmup]
value = false
[params.use_label_smoothing]
value = false
[params.use_ema]
value = false
[params.lookahead]
value = 0
[params.tta]
value = "none"
[params.block_dropout]
value = 0.0
"""


def search_args(storage: str, study: str, data: Path, space: Path, *extra: str) -> list[str]:
    """`cifar-search run` arguments for a smoke-budget search on generated data, CPU only."""
    return ["run", "--study", study, "--storage", storage, "--budget", "smoke", "--space",
            str(space), "--data", str(data), "--device", "cpu", "--no-progress", *extra]


def hears_ctrl_c() -> None:
    """``preexec_fn`` of a child a test sends SIGINT: SIGINT back to its default. A shell
    without job control starts background commands (``pytest ... &`` in a script) with SIGINT
    ignored, the child inherits that, and CPython installs its KeyboardInterrupt handler only
    over the default, so the test's Ctrl-C would go unheard and the run end normally."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(args: list[str], *, threads: int = 1) -> subprocess.Popen[str]:
    """`python -m cifar_search ARGS` as a child process, output captured, unbuffered."""
    env = {**os.environ, "CIFAR_SEARCH_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cifar_search", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=hears_ctrl_c)


def load(storage: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=storage)


def wait_for_running(storage: str, study: str, procs: list[subprocess.Popen[str]], *,
                     count: int = 1, timeout: float = 180.0) -> list[optuna.trial.FrozenTrial]:
    """``count`` trials that are RUNNING and have reported at least one epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in procs:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            running = [t for t in load(storage, study).get_trials(states=(TrialState.RUNNING,))
                       if t.intermediate_values]
        except KeyError:  # the study is not created yet
            running = []
        if len(running) >= count:
            return running
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} trials started in {timeout} s")


# Optuna's schema: running trials that have reported at least one epoch
_RUNNING_SQL = """SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id
WHERE s.study_name = ? AND t.state = 'RUNNING' AND EXISTS
(SELECT 1 FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id) ORDER BY t.number"""


@contextlib.contextmanager
def held_at_an_epoch(db: Path, study: str, procs: list[subprocess.Popen[str]], *,
                     count: int = 1, timeout: float = 180.0) -> Iterator[list[int]]:
    """Hold the SQLite study still while ``count`` trials are RUNNING after reporting an epoch.

    Yields their numbers while holding the database's write lock: a worker cannot report, end
    or finish a trial without writing, so until the block ends those trials stay RUNNING,
    however fast the machine. A signal sent inside the block therefore finds them running
    (Python raises it as soon as the blocked write returns, after the block). Tests that
    interrupt, kill or watch a real process use this instead of hoping to be fast enough.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in procs:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        if db.exists():
            con = sqlite3.connect(db, timeout=60, isolation_level=None)
            try:
                con.execute("BEGIN EXCLUSIVE")
                try:
                    running = [n for (n,) in con.execute(_RUNNING_SQL, (study,))]
                except sqlite3.OperationalError:  # no tables yet: the study is being created
                    running = []
                if len(running) >= count:
                    yield running
                    return
                con.execute("ROLLBACK")
            finally:
                con.close()  # ends the transaction: the workers go on
        time.sleep(0.02)  # a trial of the tests' fixed config runs its 40 epochs for seconds
    raise AssertionError(f"fewer than {count} trials reported an epoch in {timeout} s")


def finish(procs: list[subprocess.Popen[str]], timeout: float = 300.0) -> list[str]:
    """Wait for every process; returns their outputs. Fails on a non-zero exit."""
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        outs.append(out)
    return outs


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count toward --trials."""
    from cifar_search.search.study import FINISHED, counts_toward_total

    return [t for t in study.get_trials(states=FINISHED) if counts_toward_total(t)]
