"""`cifar-search run` and the inspection commands through the real entry point and processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest
from optuna.trial import TrialState
from runhelp import TINY_TOML, finish, hears_ctrl_c, held_at_an_epoch, search_args, spawn

from cifar_search.cli.main import main


def run_args(tmp_path: Path, data: Path, space: Path, *extra: str) -> list[str]:
    return ["run", "--study", "t", "--storage", f"sqlite:///{tmp_path}/t.db", "--budget",
            "smoke", "--space", str(space), "--data", str(data), "--device", "cpu",
            "--no-progress", *extra]


def study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/t.db")


def test_run_then_inspect(tmp_path: Path, synthetic_npz: Path, tiny_space: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run_args(tmp_path, synthetic_npz, tiny_space, "--trials", "2")) == 0
    err = capsys.readouterr().err
    assert "budget smoke" in err and "2/2 finished" in err
    url = f"sqlite:///{tmp_path}/t.db"
    assert main(["status", "--study", "t", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "trials 2" in out and "best: trial" in out
    csv = tmp_path / "t.csv"
    assert main(["trials", "--study", "t", "--storage", url, "--top", "5", "--csv", str(csv)]) == 0
    header = csv.read_text().splitlines()[0].split(",")
    assert {"family", "p_optimizer", "value", "end"} <= set(header)
    assert "plain_cnn" in capsys.readouterr().out
    assert main(["best", "--study", "t", "--storage", url, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["config"]["model"]["family"] == "plain_cnn" and "seed" in best


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "--trials: must be >= 1"),
        (["--storage", "bogus://x"], "unsupported storage URL"),
        (["--enqueue-presets", "nope"], "unknown preset 'nope'"),
    ],
)
def test_bad_input_one_line_error(tmp_path: Path, synthetic_npz: Path, tiny_space: Path,
                                  capsys: pytest.CaptureFixture[str], args: list[str],
                                  message: str) -> None:
    argv = run_args(tmp_path, synthetic_npz, tiny_space)
    if "--storage" in args:
        i = argv.index("--storage")
        del argv[i:i + 2]
    with pytest.raises(SystemExit) if args[0] == "--trials" else _nothing():
        code = main([*argv, *args])
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) <= 2


def test_bad_space_file_and_missing_data(tmp_path: Path, synthetic_npz: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[params.dropout]\nlow = 0.5\nhigh = 0.1\n")
    assert main(run_args(tmp_path, synthetic_npz, bad)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "params.dropout: empty range" in err
    assert not (tmp_path / "t.db").exists()  # nothing created for a bad file
    good = tmp_path / "good.toml"
    good.write_text(TINY_TOML)
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = run_args(tmp_path, empty / "cifar10.npz", good)
    assert main(argv) == 2
    assert "cifar10.npz" in capsys.readouterr().err


def test_unknown_study_lists_known_ones(tmp_path: Path, synthetic_npz: Path, tiny_space: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    main(run_args(tmp_path, synthetic_npz, tiny_space, "--trials", "1"))
    capsys.readouterr()
    url = f"sqlite:///{tmp_path}/t.db"
    assert main(["status", "--study", "nope", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "no study named 'nope'" in err and "studies there: t" in err
    assert main(["status", "--study", "x", "--storage", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert not (tmp_path / "none.db").exists()


def _spawn(tmp_path: Path, data: Path, space: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CIFAR_SEARCH_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cifar_search", *run_args(tmp_path, data, space, *extra)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        preexec_fn=hears_ctrl_c,
    )


# Tests that interrupt, kill or watch a real process control what they race: a fixed config
# (fixed_space: nothing sampled, so nothing diverges; no pruner) that runs all its epochs, held
# still by held_at_an_epoch (the study's write lock) while the test acts.
FIXED = ("--trials", "1", "--epochs", "40", "--train-subset", "256", "--pruner", "none")


def test_sigkilled_worker_trial_is_retried_with_same_params(
    tmp_path: Path, synthetic_npz: Path, fixed_space: Path
) -> None:
    fast = (*FIXED, "--heartbeat", "1")
    proc = _spawn(tmp_path, synthetic_npz, fixed_space, *fast)
    with held_at_an_epoch(tmp_path / "t.db", "t", [proc]) as (number,):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = study(tmp_path).trials[number]
    assert killed.state == TrialState.RUNNING  # nobody closed it: the worker died
    time.sleep(5)  # longer than the grace period (4 heartbeats)
    assert main(run_args(tmp_path, synthetic_npz, fixed_space, *fast)) == 0
    trials = study(tmp_path).trials
    assert trials[number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert len(retries) == 1 and retries[0].params == killed.params
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert [t.number for t in finished] == [retries[0].number]


def test_sigint_leaves_a_consistent_study_that_resumes(
    tmp_path: Path, synthetic_npz: Path, fixed_space: Path
) -> None:
    proc = _spawn(tmp_path, synthetic_npz, fixed_space, *FIXED)
    with held_at_an_epoch(tmp_path / "t.db", "t", [proc]) as (number,):
        proc.send_signal(signal.SIGINT)  # raised in the trial as soon as the study is let go
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "run the same command again to resume" in out
    s = study(tmp_path)
    assert not s.get_trials(states=(TrialState.RUNNING,))
    interrupted = s.trials[number]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["end"] == "interrupted"
    assert main(run_args(tmp_path, synthetic_npz, fixed_space, *FIXED)) == 0
    trials = study(tmp_path).trials
    retry = [t for t in trials if t.user_attrs.get("retry_of") == number]
    assert len(retry) == 1 and retry[0].params == interrupted.params
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert [t.number for t in finished] == [retry[0].number]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    from optuna_dashboard import wsgi

    from cifar_search.search.storage import open_storage

    url = f"sqlite:///{tmp_path}/t.db"
    storage = open_storage(url, heartbeat_interval=None)
    optuna.create_study(study_name="t", storage=storage, direction="maximize")
    server = make_server("127.0.0.1", 0, wsgi(storage), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_dashboard_lists_the_study_while_it_runs(
    tmp_path: Path, synthetic_npz: Path, fixed_space: Path, dashboard: str
) -> None:
    proc = _spawn(tmp_path, synthetic_npz, fixed_space, *FIXED[2:], "--trials", "2")
    with held_at_an_epoch(tmp_path / "t.db", "t", [proc]):  # the dashboard reads meanwhile
        studies = _get(f"{dashboard}/api/studies")["study_summaries"]
        trials = _get(f"{dashboard}/api/studies/{studies[0]['study_id']}?after=0")["trials"]
        seen_running = any(t["state"] == "Running" for t in trials)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    studies = _get(f"{dashboard}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["t"]
    deadline = time.time() + 20  # the dashboard caches running trials briefly
    while True:
        trials = _get(f"{dashboard}/api/studies/{studies[0]['study_id']}?after=0")["trials"]
        states = [t["state"] for t in trials]
        if all(s in ("Complete", "Pruned") for s in states) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(trials) == 2 and all(s in ("Complete", "Pruned") for s in states), states
    assert any(a["key"] == "config" for a in trials[0]["user_attrs"])
    assert seen_running


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_progress_bar_replaces_optunas_per_trial_lines(tmp_path: Path, synthetic_npz: Path,
                                                       tiny_space: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    quiet = search_args(url, "bar", synthetic_npz, tiny_space, "--trials", "1")
    quiet.remove("--no-progress")
    (with_bar,) = finish([spawn(quiet)])
    assert "1/1" in with_bar and "Trial 0 finished" not in with_bar
    (plain,) = finish([spawn(search_args(url, "log", synthetic_npz, tiny_space, "--trials", "1"))])
    assert "Trial 0 finished" in plain
