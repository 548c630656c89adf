"""Checkpoint artifacts: a full disk stops the study in one line; read-back ids stay inside."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from runhelp import TINY_TOML

from cifar_search.errors import ConfigError
from cifar_search.search.artifacts import TopKCheckpoints
from cifar_search.train.config import TrainConfig

# A run in a child process whose files may not grow past LIMIT bytes (RLIMIT_FSIZE; SIGXFSZ
# ignored, so write() fails with EFBIG, which counts as "no space" like ENOSPC). The model has a
# 2048-unit hidden layer (about 2.1 M parameters, an 8 MB checkpoint), while the study file and
# its WAL stay far below the limit for one trial.
LIMIT = 4_000_000  # bytes
CHILD = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    from cifar_search.cli.main import main
    raise SystemExit(main(sys.argv[1:]))
""")


def test_disk_full_while_saving_a_checkpoint_stops_the_study(tmp_path: Path,
                                                             synthetic_npz: Path) -> None:
    space = tmp_path / "big.toml"
    big = TINY_TOML.replace("[params.hidden]\nvalue = 0", "[params.hidden]\nvalue = 2048")
    space.write_text(big)
    assert "value = 2048" in space.read_text()
    url = f"sqlite:///{tmp_path}/t.db"
    args = ["run", "--study", "t", "--storage", url, "--budget", "smoke", "--space", str(space),
            "--data", str(synthetic_npz), "--device", "cpu", "--no-progress", "--trials", "3",
            "--epochs", "1", "--train-subset", "256", "--max-flops", "1e12",
            "--enqueue-presets", "none"]
    env = {**os.environ, "CIFAR_SEARCH_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", CHILD.format(limit=LIMIT), *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifar-search")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no space to save trial 0's checkpoint" in errors[0]
    assert "File too large" in errors[0]
    trials = optuna.load_study(study_name="t", storage=url).trials
    assert len(trials) == 1  # the study stopped at the first full disk
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["end"] == "disk_full"
    assert "File too large" in trials[0].user_attrs["error"]


def test_a_checkpoint_id_read_back_must_stay_in_its_folder(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    store = TopKCheckpoints(tmp_path / "store", k=1)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    planted = optuna.trial.create_trial(value=0.1, user_attrs={"checkpoint": "../victim"})
    study.add_trial(planted)
    trial = study.ask()
    with pytest.raises(ConfigError, match=r"checkpoint id '\.\./victim' leads outside"):
        store(trial, torch.nn.Linear(2, 2), TrainConfig(), 0.9)
    assert victim.read_text() == "keep me"
