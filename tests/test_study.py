"""The search end to end on generated data: real SQLite studies, real training, no mocks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cifar_search.errors import ConfigError, StudyError
from cifar_search.search.launch import SearchSettings, prepare_search
from cifar_search.search.space import DEFAULT_SPACE, UNSET
from cifar_search.search.space_file import apply_overrides

TINY = {
    "family": {"value": "plain_cnn"},
    "width": {"value": 16},
    "depth_plain": {"value": "1-1-1"},
    "input_size": {"value": 32},
    "hidden": {"value": 0},
    "batch_size": {"choices": [64, 128]},
    "auto_augment": {"value": "none"},
    "rotate": {"value": False},
    "use_blur": {"value": False},
}
TINY_SPACE = apply_overrides(DEFAULT_SPACE, {"params": TINY})


def settings(tmp_path: Path, data: Path, **kw: object) -> SearchSettings:
    base = SearchSettings(
        study="t", storage=f"sqlite:///{tmp_path}/t.db", trials=3, budget="smoke",
        data=str(data), space=TINY_SPACE, device="cpu", progress=False, heartbeat=None,
        keep_top_k=2,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def load(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/t.db")


def test_study_runs_and_records_every_trial(tmp_path: Path, synthetic_npz: Path) -> None:
    search = prepare_search(settings(tmp_path, synthetic_npz, trials=4, epochs=3,
                                     pruner="median"))
    result = search.run()
    assert result.finished == 4 and not result.interrupted
    study = load(tmp_path)
    assert study.user_attrs["budget"]["name"] == "smoke"
    for t in study.trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        a = t.user_attrs
        assert a["end"] in ("complete", "pruned")
        assert {"config", "seed", "n_params", "flops", "device", "versions", "curve"} <= set(a)
        assert len(a["curve"]) == len(t.intermediate_values) == a["epochs_run"]
        assert a["config"]["epochs"] == 3  # the schedule spans the full budget ...
        if t.state == TrialState.PRUNED:  # ... even where the pruner stopped early
            assert a["end_epoch"] == max(t.intermediate_values)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and all(0 <= t.value <= 1 for t in complete)
    assert complete[0].value == complete[0].user_attrs["curve"][-1]["val_acc"]
    seeds = {t.user_attrs["seed"] for t in study.trials}
    assert len(seeds) == len(study.trials)
    kept = [t for t in study.trials if "checkpoint" in t.user_attrs]
    assert kept, "the best trial's weights are kept as an artifact"
    files = list((tmp_path / "artifacts" / "t").rglob("*"))
    assert 1 <= len([f for f in files if f.is_file()]) <= 2  # top-k only


def test_trials_means_total_across_runs(tmp_path: Path, synthetic_npz: Path) -> None:
    prepare_search(settings(tmp_path, synthetic_npz, trials=2, epochs=1)).run()
    assert len(load(tmp_path).trials) == 2
    result = prepare_search(settings(tmp_path, synthetic_npz, trials=3, epochs=1)).run()
    assert result.finished == 3 and len(load(tmp_path).trials) == 3
    prepare_search(settings(tmp_path, synthetic_npz, trials=3, epochs=1)).run()
    assert len(load(tmp_path).trials) == 3  # already there: nothing more runs


def test_resumed_study_does_not_replay_the_same_params(tmp_path: Path,
                                                       synthetic_npz: Path) -> None:
    prepare_search(settings(tmp_path, synthetic_npz, trials=1, epochs=1, sampler="random")).run()
    prepare_search(settings(tmp_path, synthetic_npz, trials=2, epochs=1, sampler="random")).run()
    first, second = load(tmp_path).trials
    assert first.params != second.params


def test_constraints_reject_before_training(tmp_path: Path, synthetic_npz: Path) -> None:
    result = prepare_search(settings(tmp_path, synthetic_npz, trials=2, max_params=10)).run()
    assert result.stopped_by_errors and "infeasible" in result.last_error
    assert result.finished == 0  # infeasible configs cost nothing and do not count
    trials = load(tmp_path).trials
    assert len(trials) == 50
    for t in trials:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["end"] == "infeasible"
        assert "params > max" in t.user_attrs["error"]
        assert t.user_attrs["curve"] == [] and not t.intermediate_values
        assert "train_seconds" not in t.user_attrs


def test_infeasible_configs_do_not_count(tmp_path: Path, synthetic_npz: Path) -> None:
    space = TINY_SPACE.replace_param("width", choices=(16, 160), fixed=UNSET)
    search = prepare_search(settings(tmp_path, synthetic_npz, trials=1, epochs=1, space=space,
                                     max_flops=30e6, presets=()))
    search.study.enqueue_trial({"width": 160})
    search.study.enqueue_trial({"width": 16})
    assert search.run().finished == 1
    big, small = load(tmp_path).trials
    assert big.user_attrs["end"] == "infeasible" and small.user_attrs["end"] != "infeasible"


def test_out_of_memory_and_divergence_are_recorded_and_the_study_goes_on(
    tmp_path: Path, synthetic_npz: Path
) -> None:
    # A width whose second conv needs ~1.4 TB: a real allocation failure, not a mock.
    space = TINY_SPACE.replace_param("width", choices=(16, 200_000), fixed=UNSET)
    space = space.replace_param("lr_sgd", high=1e12)
    s = settings(tmp_path, synthetic_npz, trials=3, epochs=2, space=space, max_flops=1e30)
    search = prepare_search(s)
    base = {"width": 16, "optimizer": "sgd", "batch_size": 64}
    search.study.enqueue_trial({**base, "width": 200_000})
    search.study.enqueue_trial({**base, "lr_sgd": 1e10, "use_weight_decay": False,
                                "schedule": "constant", "warmup": False, "batch_norm": False})
    search.study.enqueue_trial({**base, "lr_sgd": 0.5})
    result = search.run()
    assert result.finished == 3
    oom, nan, ok = load(tmp_path).trials
    assert oom.user_attrs["end"] == "oom" and oom.state == TrialState.PRUNED
    assert "allocate" in oom.user_attrs["error"] or "memory" in oom.user_attrs["error"]
    assert nan.user_attrs["end"] == "diverged" and nan.state == TrialState.PRUNED
    assert ok.user_attrs["end"] in ("complete", "pruned")
    # the model itself did not fit: no smaller batch would help, so nothing was queued again
    assert "oom_retry_batch" not in oom.user_attrs
    assert not load(tmp_path).get_trials(states=(TrialState.WAITING,))


def test_a_diverged_or_pruned_trials_model_is_freed_before_the_next_one_is_built(
    tmp_path: Path, synthetic_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import weakref

    import cifar_search.train.recipe as recipe

    earlier: list[weakref.ref[object]] = []
    alive_at_creation: list[int] = []
    real = recipe.create_model

    def create_model(cfg: object) -> object:  # the real builder; notes what is still alive
        alive_at_creation.append(sum(r() is not None for r in earlier))
        model = real(cfg)  # type: ignore[arg-type]
        earlier.append(weakref.ref(model))
        return model

    monkeypatch.setattr(recipe, "create_model", create_model)
    space = TINY_SPACE.replace_param("lr_sgd", high=1e12)
    search = prepare_search(settings(tmp_path, synthetic_npz, trials=3, epochs=2, space=space,
                                     pruner="none"))
    diverge = {"width": 16, "optimizer": "sgd", "batch_size": 64, "lr_sgd": 1e10,
               "use_weight_decay": False, "schedule": "constant", "warmup": False,
               "batch_norm": False}
    search.study.enqueue_trial(diverge)
    search.study.enqueue_trial(diverge)
    search.study.enqueue_trial({"width": 16, "optimizer": "sgd", "batch_size": 64,
                                "lr_sgd": 0.5})
    gc.disable()  # freed by reference counting alone, not by a collection that happened to run
    try:
        assert search.run().finished == 3
    finally:
        gc.enable()
    assert [t.user_attrs["end"] for t in load(tmp_path).trials][:2] == ["diverged"] * 2
    # Optuna holds the exception that ended a trial in a reference cycle; had it been the one
    # raised in training, the diverged models would still be alive here.
    assert alive_at_creation == [0, 0, 0]

    # the same for a trial the pruner stops (its TrialPruned is raised inside training)
    earlier.clear()
    alive_at_creation.clear()
    pruned_path = tmp_path / "pruned"
    pruned_path.mkdir()
    search = prepare_search(settings(pruned_path, synthetic_npz, trials=3, epochs=3,
                                     space=space, pruner="halving"))
    good = {"width": 16, "optimizer": "sgd", "batch_size": 64, "lr_sgd": 0.5}
    for params in (good, {**good, "lr_sgd": 0.001, "use_weight_decay": False}, good):
        search.study.enqueue_trial(params)
    gc.disable()
    try:
        assert search.run().finished == 3
    finally:
        gc.enable()
    assert load(pruned_path).trials[1].user_attrs["end"] == "pruned"
    assert alive_at_creation == [0, 0, 0]


# Runs a search under an address-space limit set just above what the process holds once its
# data is loaded: a real allocation failure at batch 1024 that batch 64 fits under.
OOM_SCRIPT = """
import resource, sys
import optuna
from cifar_search.search.launch import SearchSettings, prepare_search
from cifar_search.search.space import UNSET
from cifar_search.search.space_file import load_space

data, db, headroom_gib, *flags = sys.argv[1:]
space = (load_space("tiny").replace_param("width", fixed=64)
         .replace_param("batch_size", choices=(64, 1024), fixed=UNSET))
search = prepare_search(SearchSettings(
    study="t", storage=f"sqlite:///{db}", trials=2, budget="smoke", epochs=1, data=data,
    space=space, device="cpu", progress=False, presets=(), max_flops=1e12,
    oom_retry="--no-oom-retry" not in flags))
search.study.enqueue_trial({"batch_size": 1024, "optimizer": "sgd"})
status = open("/proc/self/status").read().split("VmSize:")[1]
held = int(status.split()[0]) * 1024
limit = held + int(float(headroom_gib) * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
search.run()
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmSize (Linux)")
@pytest.mark.parametrize("retry", [True, False])
def test_out_of_memory_at_a_batch_size_is_retried_at_a_smaller_one(
    tmp_path: Path, synthetic_npz: Path, retry: bool
) -> None:
    import os
    import subprocess
    import sys

    script = tmp_path / "oom.py"
    script.write_text(OOM_SCRIPT)
    db = tmp_path / "t.db"
    args = [sys.executable, str(script), str(synthetic_npz), str(db), "0.4"]
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # keeps reserved address space predictable
    proc = subprocess.run([*args, *([] if retry else ["--no-oom-retry"])], env=env,
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = optuna.load_study(study_name="t", storage=f"sqlite:///{db}").trials
    first = trials[0]
    assert first.params["batch_size"] == 1024 and first.user_attrs["end"] == "oom"
    assert "allocate" in first.user_attrs["error"]
    if not retry:
        assert "oom_retry_batch" not in first.user_attrs
        assert all(t.user_attrs.get("oom_retry_of") is None for t in trials)
        return
    assert first.user_attrs["oom_retry_batch"] == 64
    second = trials[1]
    assert second.user_attrs["oom_retry_of"] == 0
    assert {k: v for k, v in second.params.items() if k != "batch_size"} == {
        k: v for k, v in first.params.items() if k != "batch_size"}
    assert second.params["batch_size"] == 64
    # it trained: the failed step's memory was given back before the retry started
    assert second.user_attrs["end"] in ("complete", "pruned"), second.user_attrs.get("error")


def test_a_bug_in_every_trial_stops_the_study_with_its_traceback(
    tmp_path: Path, synthetic_npz: Path
) -> None:
    broken = TINY_SPACE.replace_param("depth_plain", fixed="1-1-1-1-1-1-1-1")
    result = prepare_search(settings(tmp_path, synthetic_npz, trials=10, space=broken)).run()
    assert result.stopped_by_errors
    assert "Traceback" in result.last_error
    trials = load(tmp_path).trials
    assert len(trials) == 3 and all(t.state == TrialState.FAIL for t in trials)


def test_warm_start_enqueues_presets_once(tmp_path: Path, synthetic_npz: Path) -> None:
    s = settings(tmp_path, synthetic_npz, trials=1, epochs=1, space=DEFAULT_SPACE,
                 presets=("rdfia-alexnet",), max_flops=1e12)
    search = prepare_search(s)
    assert search.enqueued == ["rdfia-alexnet"]
    assert prepare_search(s).enqueued == []  # not enqueued twice
    search.run()
    trial = load(tmp_path).trials[0]
    assert trial.user_attrs["preset"] == "rdfia-alexnet"
    assert trial.user_attrs["config"]["model"]["family"] == "alexnet"


def test_presets_over_the_budget_are_narrowed_not_dropped(tmp_path: Path,
                                                          synthetic_npz: Path) -> None:
    from cifar_search.search.launch import fit_preset
    from cifar_search.search.objective import Constraints
    from cifar_search.train.models import model_cost
    from cifar_search.train.presets import get_preset

    s = settings(tmp_path, synthetic_npz, trials=1, space=DEFAULT_SPACE, presets=None,
                 max_flops=80e6)
    search = prepare_search(s)
    assert "fast94@w32" in search.enqueued and "davidnet@w16" in search.enqueued
    assert "shake-shake-26" not in " ".join(search.enqueued)  # too big at every width
    fast = fit_preset(get_preset("fast94").config, Constraints(max_flops=80e6), DEFAULT_SPACE)
    assert fast is not None and fast.model.width == 32 and model_cost(fast.model)[1] <= 80e6
    waiting = load(tmp_path).get_trials(states=(TrialState.WAITING,))
    queued = {t.user_attrs["preset"]: t.system_attrs["fixed_params"] for t in waiting}
    assert queued["fast94@w32"]["width"] == 32 and queued["ensta-cnn"]["width"] == 32


def test_preset_outside_a_narrowed_space_is_skipped(tmp_path: Path, synthetic_npz: Path) -> None:
    search = prepare_search(settings(tmp_path, synthetic_npz, presets=("davidnet",)))
    assert search.enqueued == []


def test_resume_with_another_budget_is_refused(tmp_path: Path, synthetic_npz: Path) -> None:
    prepare_search(settings(tmp_path, synthetic_npz, trials=1, epochs=1)).run()
    with pytest.raises(StudyError, match="mix incomparable trials"):
        prepare_search(settings(tmp_path, synthetic_npz, trials=2, epochs=2))


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"storage": "bogus://x"}, StudyError, "unsupported storage URL"),
        ({"storage": "sqlite:///no/such/dir/x.db"}, StudyError, "does not exist"),
        ({"objectives": ("params",)}, ConfigError, "must start with accuracy"),
        ({"objectives": ("accuracy", "speed")}, ConfigError, "unknown objective 'speed'"),
        ({"sampler": "annealing"}, ConfigError, "unknown sampler"),
        ({"pruner": "guess"}, ConfigError, "unknown pruner"),
        ({"presets": ("alexnet9",)}, ConfigError, "alexnet9"),
        ({"trials": 0}, ConfigError, "--trials must be >= 1"),
    ],
)
def test_bad_settings_fail_before_anything_is_created(
    tmp_path: Path, synthetic_npz: Path, changes: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        prepare_search(settings(tmp_path, synthetic_npz, **changes))
    assert not (tmp_path / "t.db").exists() or changes.get("storage") is None


def test_multi_objective_returns_a_pareto_front(tmp_path: Path, synthetic_npz: Path) -> None:
    s = settings(tmp_path, synthetic_npz, trials=3, epochs=1, objectives=("accuracy", "params"))
    search = prepare_search(s)
    assert isinstance(search.study.sampler, optuna.samplers.NSGAIISampler)
    search.run()
    study = load(tmp_path)
    assert len(study.directions) == 2 and study.best_trials
    for t in study.best_trials:
        assert t.values[1] == t.user_attrs["n_params"]
    assert json.loads(json.dumps(study.user_attrs["objectives"])) == ["accuracy", "params"]


def test_the_dashboard_names_the_metrics(tmp_path: Path) -> None:
    from cifar_search.search.budget import BUDGETS
    from cifar_search.search.storage import open_storage
    from cifar_search.search.study import create_or_resume, make_pruner, make_sampler

    storage = open_storage(f"sqlite:///{tmp_path}/m.db")
    study = create_or_resume(storage, "m", sampler=make_sampler("random", 0, multi=True),
                             pruner=make_pruner("none", BUDGETS["smoke"]),
                             objectives=("accuracy", "params"), settings={"seed": 0})
    assert study.metric_names == ["val accuracy", "params"]
    again = optuna.load_study(study_name="m", storage=f"sqlite:///{tmp_path}/m.db")
    assert again.metric_names == ["val accuracy", "params"]


def test_a_disk_full_trial_stops_the_study_and_is_retried_on_resume() -> None:
    from cifar_search.errors import DiskFullError
    from cifar_search.search.study import optimize, retry_interrupted

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("end", "disk_full")  # as Objective records it
        trial.set_user_attr("error", "no space to save trial 0's checkpoint")
        raise DiskFullError("no space to save trial 0's checkpoint")

    study = optuna.create_study(direction="maximize")
    result = optimize(study, objective, total=5)
    assert result.stopped_by_errors and len(study.trials) == 1  # stopped at the first
    assert result.last_error == "no space to save trial 0's checkpoint"
    assert retry_interrupted(study) == 1 and retry_interrupted(study) == 0  # queued once
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.system_attrs["fixed_params"] == study.trials[0].params
    assert queued.user_attrs["retry_of"] == 0


def test_patience_stops_after_n_finished_trials_without_a_better_best() -> None:
    from cifar_search.search.study import StopOnPatience, stale_trials

    values = iter([0.5, 0.6, 0.55, None, 0.6, 0.4, 0.9, 0.95])  # None: pruned

    def objective(trial: optuna.Trial) -> float:
        v = next(values)
        if v is None:
            trial.report(0.1, 1)
            raise optuna.TrialPruned()
        return v

    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=8, callbacks=[StopOnPatience(3)])
    # best 0.6 at trial 1; 0.55, pruned, 0.6 (a tie) make three without improvement
    assert len(study.trials) == 5 and stale_trials(study) == 3
    assert study.best_value == 0.6


def test_patience_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    from cifar_search.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--patience", "0"])
    assert exc.value.code == 2 and "--patience" in capsys.readouterr().err


def test_a_config_above_the_expensive_mark_is_named_before_it_trains(
        tmp_path: Path, synthetic_npz: Path, caplog: pytest.LogCaptureFixture) -> None:
    space = (TINY_SPACE.replace_param("family", fixed="resnet")
             .replace_param("width", fixed=160)
             .replace_param("depth_resnet", fixed="3-4-23-3")
             .replace_param("block", fixed="bottleneck"))
    s = settings(tmp_path, synthetic_npz, trials=1, budget="gpu", space=space, presets=(),
                 max_params=1)  # infeasible right after the check: nothing trains
    with caplog.at_level("WARNING", logger="cifar_search.search.objective"):
        prepare_search(s).run()
    assert any("resnet width 160 depth 3-4-23-3 costs" in r.getMessage()
               and "--max-flops caps it" in r.getMessage() for r in caplog.records)
