"""Helpers for tests that drive `cifar-search run` as real processes against a real storage."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

# One tiny fixed model (the shipped space "tiny": plain CNN, width 16, one conv a stage): the
# search machinery is what these tests exercise, so each trial trains in a second on one core.
TINY_TOML = (Path(__file__).resolve().parents[1] / "cifar_search" / "spaces" / "tiny.toml"
             ).read_text()


def search_args(storage: str, study: str, data: Path, space: Path, *extra: str) -> list[str]:
    """`cifar-search run` arguments for a smoke-budget search on generated data, CPU only."""
    return ["run", "--study", study, "--storage", storage, "--budget", "smoke", "--space",
            str(space), "--data", str(data), "--device", "cpu", "--no-progress", *extra]


def spawn(args: list[str], *, threads: int = 1) -> subprocess.Popen[str]:
    """`python -m cifar_search ARGS` as a child process, output captured, unbuffered."""
    env = {**os.environ, "CIFAR_SEARCH_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cifar_search", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


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
    from cifar_search.study import FINISHED, counts_toward_total

    return [t for t in study.get_trials(states=FINISHED) if counts_toward_total(t)]
