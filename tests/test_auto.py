"""`cifar-search auto` end to end on a generated data set: the plan, the search's trials in the
study, the final training of the winner on all training images, the exports, Ctrl-C and resume.

The plan is made from injected rates (``AutoSettings.rates``), so what is planned does not
depend on how fast this machine is; the tiny recipes then train for real in a second or two.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from cifar_search.cli.main import main
from cifar_search.errors import StudyError
from cifar_search.search.auto import AutoSettings, run_auto
from cifar_search.search.auto_plan import Candidate, Plan, Rung
from cifar_search.search.auto_search import Search
from cifar_search.search.retrain import config_differences
from cifar_search.search.space import DEFAULT_SPACE, rebuild_in
from cifar_search.train.checkpoint import read_config
from cifar_search.train.config import AugmentConfig, ModelConfig, OptimConfig, TrainConfig
from cifar_search.train.data import load_cifar10
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.throughput import Rate
from cifar_search.train.trainer import EpochMetrics


def recipe(lr: float, width: int = 16) -> TrainConfig:
    """A tiny plain CNN inside the default space; lr as the optimiser receives it (batch 64)."""
    return TrainConfig(
        model=ModelConfig(family="plain_cnn", width=width, depth=(1, 1, 1)),
        augment=AugmentConfig(crop_padding=0, flip="none"),
        optim=OptimConfig(optimizer="sgd", lr=lr, momentum=0.9, weight_decay=5e-4),
        epochs=2, batch_size=64)


RECIPES = {"good": recipe(0.05), "slow-lr": recipe(0.002), "other": recipe(0.02)}


def rates(cfg: TrainConfig) -> Rate:
    """60 images/s at width 16, falling with the square of the width: T of 1200 s then holds
    about eighteen trainings of a recipe, so the plan searches (its top rung gets a recipe's own
    epochs), 400 s do not, and the final training is short."""
    return Rate(train=60.0 * (16 / cfg.model.width) ** 2, eval=1000.0)


def settings(tmp_path: Path, data: Path, **kw: object) -> AutoSettings:
    base: dict[str, object] = dict(
        time=1200.0, study="a", storage=f"sqlite:///{tmp_path}/a.db", out=tmp_path / "model",
        data=data, device="cpu", precision="fp32", recipes=RECIPES, variants=2, rates=rates,
        export=False)
    return AutoSettings(**{**base, **kw})  # type: ignore[arg-type]


def load(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="a", storage=f"sqlite:///{tmp_path}/a.db")


def test_auto_searches_then_trains_and_exports_the_top_rungs_winner(
        tmp_path: Path, synthetic_npz: Path) -> None:
    lines: list[str] = []
    result = run_auto(settings(tmp_path, synthetic_npz, export=True), say=lines.append)
    plan = result.plan
    assert plan.rungs and plan.search_s + plan.final_s == pytest.approx(plan.left_s)
    assert plan.left_s <= plan.time_s
    assert lines[0].startswith("time 1200 s")  # the plan is said before anything trains
    study = load(tmp_path)
    trials = study.get_trials(deepcopy=False)
    rungs = [t.user_attrs["rung"] for t in trials]
    assert rungs[: plan.rungs[0].trials] == [0] * plan.rungs[0].trials
    assert max(rungs) == len(plan.rungs) - 1
    names = {t.user_attrs["candidate"] for t in trials}
    # every recipe, at the width a top-rung trial holds: here its own, where each gets its own
    # epochs; the final share, nine times longer, widens only the winner
    assert {"good", "slow-lr", "other"} <= names
    assert all(t.user_attrs["config"]["model"]["width"] == 16 for t in trials)
    top_trial = plan.rungs[-1].seconds * rates(RECIPES["good"]).train / plan.rungs[-1].images
    assert {t.user_attrs["rung_epochs"] for t in trials if t.user_attrs["rung"] == 2} == {
        int(top_trial)} and int(top_trial) >= RECIPES["good"].epochs
    assert any("~" in n for n in names)  # and variants of the best
    for t in trials:  # ordinary trials: retrain, status and the dashboard read them
        assert t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["end"] == "complete"
        assert t.user_attrs["curve"][-1]["val_acc"] == pytest.approx(t.value)
    top = [t for t in trials if t.user_attrs["rung"] == len(plan.rungs) - 1]
    best = max(top, key=lambda t: (t.value, "~" not in t.user_attrs["candidate"]))
    assert result.winner == best.user_attrs["candidate"] + "@w32"
    # the exported model is the winner's config, widened and trained with the epochs that
    # fill the rest
    shipped = read_config(result.run_dir)
    stored = TrainConfig.from_dict(best.user_attrs["config"])
    assert shipped.model.width == 32
    assert config_differences(shipped.replace(epochs=stored.epochs, model=stored.model),
                              stored) == []
    assert study.user_attrs["auto"]["searched"] == best.user_attrs["candidate"]
    assert (result.run_dir / "model.onnx").is_file() and (result.run_dir / "MODEL.md").is_file()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["data"]["train_size"] == 2000  # all training images, validation merged
    assert metrics["auto"]["winner"] == result.winner
    assert len(metrics["auto"]["rank_correlation"]) == len(plan.rungs) - 1
    state = study.user_attrs["auto"]
    assert state["final"]["test_acc"] == pytest.approx(result.test_acc)
    assert state["spent_s"] <= 1200 and f"retrain:{best.number}" in study.user_attrs
    # the report shows the plan and how well the lower rung predicted the top one
    report = tmp_path / "a-report.html"  # report --out is the folder it is written in
    assert main(["report", "--study", "a", "--storage", f"sqlite:///{tmp_path}/a.db", "--out",
                 str(tmp_path), "--runs", str(tmp_path)]) == 0
    assert "Rank correlation between rungs (Spearman)" in report.read_text()
    with pytest.raises(StudyError, match="is finished"):  # nothing is trained twice
        run_auto(settings(tmp_path, synthetic_npz))


def test_no_search_where_it_cannot_pay_trains_the_strongest_recipe(
        tmp_path: Path, synthetic_npz: Path) -> None:
    result = run_auto(settings(tmp_path, synthetic_npz, time=400.0), say=lambda _: None)
    assert result.plan.rungs == () and "no search" in result.plan.reason
    assert result.winner.startswith("good")  # the first recipe is the prior's choice
    assert load(tmp_path).get_trials() == []
    assert "retrain:preset:good" in load(tmp_path).user_attrs
    # the final training fills its share to within a batch an epoch (fractional epochs as a
    # random subset an epoch), not to within a whole epoch: widened to width 24 (27 images/s
    # planted), 5.x epochs of 2,000 images are due, and the fraction is not left unused
    final = load(tmp_path).user_attrs["auto"]["final"]
    shipped = TrainConfig.from_dict(result.retrain.metrics["config"])
    used = final["epochs"] * (final["epoch_images"] or 2000) / rates(shipped).train
    assert 0.85 * 400 <= used <= 400
    assert result.retrain.metrics["data"]["epoch_images"] == final["epoch_images"]
    # paced: this machine trains far faster than the planted 20 images/s, so after the first
    # epoch the pacer gives every later epoch all the images (whole batches) it has time for
    data = result.retrain.metrics["data"]
    assert data["paced"] is True and final["epoch_images_run"] == data["epoch_images_run"]
    run = data["epoch_images_run"]
    assert len(run) == final["epochs"] and all(n == max(run) >= run[0] for n in run[1:])


def test_ctrl_c_in_the_final_training_resumes_within_what_is_left(
        tmp_path: Path, synthetic_npz: Path) -> None:
    def interrupt(epochs: int, epoch: int, m: EpochMetrics) -> None:
        raise KeyboardInterrupt

    two = {k: RECIPES[k] for k in ("good", "other")}
    with pytest.raises(KeyboardInterrupt):
        run_auto(settings(tmp_path, synthetic_npz, recipes=two, variants=1), say=lambda _: None,
                 on_epoch=interrupt)
    study = load(tmp_path)
    searched = len(study.trials)
    spent = study.user_attrs["auto"]["spent_s"]
    assert searched > 0 and spent > 0 and "final" not in study.user_attrs["auto"]
    lines: list[str] = []
    result = run_auto(settings(tmp_path, synthetic_npz, recipes=two, variants=1),
                      say=lines.append)
    assert len(load(tmp_path).trials) == searched  # the search's trials are not run again
    assert lines[0].startswith("resuming")
    assert result.wall_s >= spent and result.wall_s <= 1200
    with pytest.raises(StudyError, match="--time 1200"):  # T belongs to the study
        run_auto(settings(tmp_path, synthetic_npz, study="a", time=600.0))


def test_ctrl_c_in_the_final_training_goes_on_from_its_last_resume_file(
        tmp_path: Path, synthetic_npz: Path) -> None:
    """The re-run trains the same planned training from the epoch after the last one saved,
    not a new, shorter one from the start; the shipped config is the planned one."""
    def interrupt(epochs: int, epoch: int, m: EpochMetrics) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_auto(settings(tmp_path, synthetic_npz, time=400.0, checkpoint_every=0.0),
                 say=lambda _: None, on_epoch=interrupt)
    planned = load(tmp_path).user_attrs["auto"]["final_plan"]
    epochs = planned["config"]["epochs"]
    assert epochs >= 3 and (tmp_path / "model" / "resume" / "seed-0.pt").is_file()
    lines: list[str] = []
    seen: list[int] = []
    result = run_auto(settings(tmp_path, synthetic_npz, time=400.0, checkpoint_every=0.0),
                      say=lines.append, on_epoch=lambda n, e, m: seen.append(e))
    assert any(line.startswith("resuming the final training: good") for line in lines)
    assert seen == list(range(2, epochs + 1))
    shipped = TrainConfig.from_dict(result.retrain.metrics["config"])
    assert shipped == TrainConfig.from_dict(planned["config"])
    assert result.retrain.metrics["data"]["epoch_images"] == planned["epoch_images"]
    assert len(result.retrain.metrics["data"]["epoch_images_run"]) == epochs
    assert not (result.run_dir / "resume").exists()


def test_cli_refuses_bad_time_in_one_line(tmp_path: Path, synthetic_npz: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "ten", "1x"):
        assert main(["auto", "--time", bad, "--data", str(synthetic_npz), "--storage",
                     f"sqlite:///{tmp_path}/x.db"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--time" in err
    assert not (tmp_path / "x.db").exists()
    assert main(["auto", "--time", "10m", "--presets", "nope", "--data", str(synthetic_npz),
                 "--storage", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    for bad in (["--study", "../x"], ["--data", str(tmp_path / "none.npz")],
                ["--out", str(synthetic_npz / "sub")]):
        assert main(["auto", "--time", "10m", "--storage", f"sqlite:///{tmp_path}/x.db",
                     "--data", str(synthetic_npz), *bad]) == 2
        assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "x.db").exists()


def test_t_counts_from_the_process_start() -> None:
    from cifar_search.cli._common import process_age

    age = process_age()
    assert 0.0 < age < 24 * 3600  # this test process started a little while ago


def test_the_reference_rate_comes_from_the_cache_where_this_device_has_one(
        tmp_path: Path, synthetic_npz: Path) -> None:
    """A cached rate spends none of T on measuring (the final training is paced anyway)."""
    from cifar_search.train.throughput import RateCache

    cache = tmp_path / "throughput.json"
    RateCache(cache).put(rebuild_in(RECIPES["good"], DEFAULT_SPACE),
                         resolve_runtime("cpu", "fp32"), Rate(20.0, 1000.0))
    said: list[str] = []
    result = run_auto(settings(tmp_path, synthetic_npz, time=400.0, rates=None, cache=cache,
                               presets=("good",), variants=0), say=said.append)
    assert said.count("cached good: 20 training images/s, 1,000 evaluation images/s") == 1
    assert not any(line.startswith("measured") for line in said)
    assert result.plan.rungs == () and result.winner == "good"


def test_a_rung_cut_short_by_the_search_time_has_trained_the_reference_first(
        synthetic_npz: Path) -> None:
    """The strongest preset by prior (here the first recipe, a poor one at rung 0) goes on and
    trains first at every later rung, so the search's time running out cannot drop it."""
    recipes = {"slow-lr": recipe(0.002), "good": recipe(0.05), "other": recipe(0.02)}
    pool = [Candidate(n, rebuild_in(cfg, DEFAULT_SPACE), rates(cfg), n)
            for n, cfg in recipes.items()]
    study = optuna.create_study(direction="maximize")
    plan = Plan(600.0, 600.0, 100.0, 500.0, (Rung(500, 1.0, 3), Rung(1000, 1.0, 2)))
    # time is up once rung 0's three trials and one trial of rung 1 have run
    search = Search(study, DEFAULT_SPACE, resolve_runtime("cpu", "fp32"),
                    load_cifar10(synthetic_npz), 0,
                    lambda: 0.0 if len(study.trials) < 4 else 1e9, plan, lambda _: None)
    search.run(pool)
    assert [t.user_attrs["candidate"] for t in study.trials] == [
        "slow-lr", "good", "other", "slow-lr"]


def _search(study: optuna.Study, plan: Plan, spent: Callable[[], float], said: list[str],
            data: Path) -> Search:
    return Search(study, DEFAULT_SPACE, resolve_runtime("cpu", "fp32"), load_cifar10(data), 0,
                  spent, plan, said.append)


def test_a_rung_trial_is_paced_to_its_rung_time(synthetic_npz: Path) -> None:
    """A trial slower than its rate said ends near its rung's time, not an epoch count later:
    after the first epoch the pacer fits the images of the epochs left into the time left.
    Here the rate is planted so that 0.01 s buy three epochs of 500 images, far less than one
    epoch takes on any machine, so every epoch after the first is cut to one batch."""
    good = Candidate("good", rebuild_in(recipe(0.05), DEFAULT_SPACE), Rate(160_000.0, 1e3),
                     "good")
    study = optuna.create_study(direction="maximize")
    rung = Rung(500, 0.01, 1)
    assert good.rung_epochs(rung) == 3
    search = _search(study, Plan(600.0, 600.0, 100.0, 500.0, (rung,)), lambda: 0.0, [],
                     synthetic_npz)
    search.run([good])
    (t,) = study.trials
    assert t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["rung_epochs"] == 3
    run = t.user_attrs["epoch_images_run"]
    assert len(run) == 3 and run[0] > 64 and run[1:] == [64, 64]  # batch 64


def test_a_rung_trial_starts_only_while_half_its_time_is_left_of_the_search(
        synthetic_npz: Path) -> None:
    """The search's share ends 100 s in; trials of 40 s start at 0 s and at 79 s spent (21 s
    left), not at 81 s (19 s left): a trial started just before the deadline would take a
    whole trial out of the final training."""
    pool = [Candidate(n, rebuild_in(cfg, DEFAULT_SPACE), rates(cfg), n)
            for n, cfg in RECIPES.items()]
    study = optuna.create_study(direction="maximize")
    said: list[str] = []
    search = _search(study, Plan(600.0, 600.0, 100.0, 500.0, (Rung(500, 40.0, 3),)),
                     lambda: (0.0, 79.0, 81.0)[min(len(study.trials), 2)], said,
                     synthetic_npz)
    search.run(pool)
    assert [t.user_attrs["candidate"] for t in study.trials] == ["good", "slow-lr"]
    assert "search time is up at rung 0: 19 s of the search left, a trial takes 40 s" in said


def test_every_rung_trial_goes_to_mlflow_and_tensorboard_with_its_candidate_and_score(
        tmp_path: Path, synthetic_npz: Path) -> None:
    """``auto --mlflow/--tensorboard``: one run per rung trial, read back from a real local
    MLflow store and real event files: its params with the candidate and rung, every epoch's
    training metrics, and the validation score it was ranked by."""
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri, tb = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "tb"
    run_auto(settings(tmp_path, synthetic_npz, mlflow=uri, tensorboard=tb, variants=0,
                      presets=("good", "other")), say=lambda _: None)
    trials = load(tmp_path).get_trials(deepcopy=False)
    assert len(trials) >= 3  # 1200 s with the planted rates: a search of three rungs
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("a")
    assert experiment is not None
    runs = {r.data.tags["optuna.trial"]: r
            for r in client.search_runs([experiment.experiment_id], max_results=1000)}
    assert sorted(runs, key=int) == [str(t.number) for t in trials]
    for t in trials:
        run = runs[str(t.number)]
        assert run.info.status == "FINISHED" and run.data.tags["end"] == "complete"
        assert run.data.params["candidate"] == t.user_attrs["candidate"]
        assert run.data.params["rung"] == str(t.user_attrs["rung"])
        assert run.data.metrics["val_acc"] == pytest.approx(t.value)
        epochs = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.step for m in epochs] == list(range(1, len(t.user_attrs["curve"]) + 1))
        events = EventAccumulator(str(tb / "a" / f"trial-{t.number:05d}"))
        events.Reload()
        assert events.Scalars("val_acc")[-1].value == pytest.approx(t.value, abs=1e-6)
        assert events.PluginTagToContent("hparams")


def test_cli_auto_without_mlflow_installed_is_one_line_and_creates_no_study(
        tmp_path: Path, synthetic_npz: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    assert main(["auto", "--time", "10m", "--storage", f"sqlite:///{tmp_path}/x.db", "--data",
                 str(synthetic_npz), "--mlflow", f"sqlite:///{tmp_path}/mlflow.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'cifar-search[mlflow]'" in err
    assert not (tmp_path / "x.db").exists()
