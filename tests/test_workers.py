"""`--workers N` on one machine and the slot rule that keeps `--trials N` exact with many workers.

The slot rule is tested on real in-memory studies; the workers run as real processes against the
local default storage (SQLite), since that is what the issue promises holds up.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from runhelp import counted, finish, held_at_an_epoch, load, search_args, spawn

from cifar_search.cli.main import main
from cifar_search.errors import ConfigError
from cifar_search.search.progress import TimeLeft, estimate_line
from cifar_search.search.study import CLAIMED, SlotClaim, has_slot
from cifar_search.search.workers import Placement, place_workers, poll


def test_cpu_workers_split_the_cores() -> None:
    places = place_workers(2, "cpu", gpus=[], cpus=[0, 1, 2, 3])
    assert [p.cpus for p in places] == [(0, 1), (2, 3)]
    assert [p.cuda for p in places] == [None, None]
    # more workers than cores: one core each, shared round-robin
    assert [p.cpus for p in place_workers(3, "cpu", gpus=[], cpus=[0, 1])] == [(0,), (1,), (0,)]
    # auto without a GPU is CPU
    assert place_workers(1, "auto", gpus=[], cpus=[0, 1])[0].cpus == (0, 1)


def test_gpu_workers_get_one_visible_gpu_each() -> None:
    places = place_workers(3, "auto", gpus=[4, 7], cpus=[0])
    assert [p.cuda for p in places] == [4, 7, 4]
    assert [p.cuda for p in place_workers(2, "cuda:1", gpus=[4, 7], cpus=[0])] == [7, 7]
    assert Placement(0, cuda=4).describe() == "worker 0: GPU 4"
    with pytest.raises(ConfigError, match=r"cuda:2: only 2 CUDA device"):
        place_workers(1, "cuda:2", gpus=[4, 7], cpus=[0])
    with pytest.raises(ConfigError, match="CUDA is not available"):
        place_workers(1, "cuda", gpus=[], cpus=[0])
    with pytest.raises(ConfigError, match="got 0"):
        place_workers(0, "cpu", gpus=[], cpus=[0])


def _running(study: optuna.Study, claimed: bool = True) -> optuna.Trial:
    trial = study.ask()
    if claimed:
        trial.set_user_attr(CLAIMED, True)
    return trial


def test_slots_go_to_the_lowest_trial_numbers() -> None:
    study = optuna.create_study()
    t0, t1 = _running(study), _running(study)
    t2 = study.ask()
    # two slots, both held by lower-numbered trials that are training: none left for t2
    assert not has_slot(study, t2.number, total=2)
    assert has_slot(study, t1.number, total=2)
    study.tell(t0, state=TrialState.FAIL)  # a crashed trial frees its slot
    assert has_slot(study, t2.number, total=2)
    study.tell(t1, 0.5)
    t0b = study.ask()
    t0b.set_user_attr("end", "infeasible")  # infeasible trials never hold a slot
    study.tell(t0b, state=TrialState.PRUNED)
    assert has_slot(study, t2.number, total=2)


def test_a_trial_waits_for_lower_ones_still_being_set_up() -> None:
    study = optuna.create_study()
    _running(study, claimed=False)  # sampled, not yet past its checks
    t1 = study.ask()
    start = time.monotonic()
    assert not has_slot(study, t1.number, total=1, wait=0.5)  # counted as training after 0.5 s
    assert time.monotonic() - start >= 0.5


def test_a_surplus_trial_gives_its_queued_params_back() -> None:
    study = optuna.create_study()
    _running(study)
    study.enqueue_trial({"x": 0.25}, user_attrs={"preset": "p"})
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    assert not SlotClaim(total=1)(trial)
    assert CLAIMED not in study.trials[trial.number].user_attrs
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [(t.params, t.user_attrs) for t in waiting] == [({"x": 0.25}, {"preset": "p"})]


def test_two_local_workers_on_sqlite_finish_exactly_n(
    tmp_path: Path, synthetic_npz: Path, tiny_space: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    args = search_args(url, "w", synthetic_npz, tiny_space, "--trials", "8", "--epochs", "2",
                       "--train-subset", "256", "--workers", "2")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "worker 0: CPU cores" in err and "worker 1: CPU cores" in err
    study = load(url, "w")
    trials = study.get_trials()
    assert len(counted(study)) == 8
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    errors = [t for t in trials if t.user_attrs.get("end") == "error"]
    assert not errors, errors[0].user_attrs["error"]  # no "database is locked", no crash
    assert "database is locked" not in err
    workers = {t.user_attrs["worker"].rsplit("#", 1)[1] for t in counted(study)}
    assert workers == {"0", "1"}  # both did work
    # the sampler seeds differ per worker: no two sampled trials share their params
    sampled = [t for t in trials if "preset" not in t.user_attrs and t.params]
    assert len({tuple(sorted(t.params.items())) for t in sampled}) == len(sampled)
    assert main(args) == 0  # resuming a finished study runs nothing more
    assert len(load(url, "w").trials) == len(trials)


def test_the_pools_poll_gives_the_time_left_from_the_trials_that_count() -> None:
    # what the starting process does each second: read the study, update the estimate
    study = optuna.create_study(direction="maximize")
    now = [0.0]
    left = TimeLeft(total=8, initial=0, clock=lambda: now[0])
    for end in ("complete", "infeasible", "complete", "complete"):  # infeasible: not counted
        trial = study.ask()
        trial.set_user_attr("end", end)
        study.tell(trial, 0.5)
    now[0] = 30.0
    done, text = poll(study, 2)
    assert (done, text) == (3, "best 50.00% | running none")
    assert left.update(done) == estimate_line(3, 8, 3, 30.0)  # "about 50 s left" at 10 s each


def test_ctrl_c_stops_every_worker_and_the_next_run_resumes(
    tmp_path: Path, synthetic_npz: Path, fixed_space: Path
) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    args = search_args(url, "w", synthetic_npz, fixed_space, "--trials", "2", "--epochs", "40",
                       "--train-subset", "256", "--workers", "2", "--pruner", "none")
    # a fixed config (nothing sampled, nothing diverges, no pruner) held still while both trials
    # are running; the 40 epochs leave them running while Ctrl-C passes on to the workers
    proc = spawn(args)
    with held_at_an_epoch(tmp_path / "w.db", "w", [proc], count=2) as running:
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 130, out
    assert "run the same command again to resume" in out
    study = load(url, "w")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    for number in running:
        closed = study.trials[number]
        assert closed.state == TrialState.FAIL and closed.user_attrs["end"] == "interrupted"
    finish([spawn(args)])
    study = load(url, "w")
    assert len(counted(study)) == 2
    retried = {t.user_attrs.get("retry_of") for t in study.trials} - {None}
    assert retried == set(running)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_worker_left_without_slots_retries_a_dead_peers_trial(tmp_path: Path) -> None:
    from cifar_search.errors import SurplusTrial
    from cifar_search.search.storage import open_storage
    from cifar_search.search.study import count_finished, optimize

    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, direction="maximize")
    dead = study.ask()  # a peer took the only slot, then died: its heartbeat stops
    dead.suggest_float("x", 0, 1)
    dead.set_user_attr(CLAIMED, True)
    storage.record_heartbeat(dead._trial_id)
    claim = SlotClaim(total=1)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if not claim(trial):
            trial.set_user_attr("end", "surplus")
            raise SurplusTrial("no slot")
        return x

    result = optimize(study, objective, total=1, timeout=60)
    assert result.finished == count_finished(study) == 1
    trials = study.get_trials()
    assert trials[dead.number].state == TrialState.FAIL  # found stale while this one waited
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 1 and done[0].system_attrs["failed_trial"] == dead.number
    assert done[0].params == trials[dead.number].params
