"""search.trackers: a real search logged to a real local MLflow store and real TensorBoard
event files, read back; a tracker that fails never stops the search."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial

from cifar_search.errors import ConfigError
from cifar_search.search.launch import SearchSettings, prepare_search
from cifar_search.search.trackers import Tracker, Trackers


def settings(tmp_path: Path, data: Path, **kw: Any) -> SearchSettings:
    base = SearchSettings(study="tracked", storage=f"sqlite:///{tmp_path}/t.db", trials=2,
                          budget="smoke", epochs=2, data=str(data), space="tiny", device="cpu",
                          progress=False, heartbeat=None, keep_top_k=0, presets=(),
                          pruner="none")
    return dataclasses.replace(base, **kw)


def trials(tmp_path: Path) -> list[FrozenTrial]:
    return optuna.load_study(study_name="tracked", storage=f"sqlite:///{tmp_path}/t.db").trials


def test_mlflow_gets_one_run_per_trial_with_params_epochs_and_end(
    tmp_path: Path, synthetic_npz: Path
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_search(settings(tmp_path, synthetic_npz, mlflow=uri)).run()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")
    assert experiment is not None
    runs = {r.data.tags["optuna.trial"]: r
            for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["0", "1"]
    for t in trials(tmp_path):
        run = runs[str(t.number)]
        assert run.info.run_name == f"trial-{t.number}" and run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in t.params.items()}
        assert run.data.tags["end"] == t.user_attrs["end"] == "complete"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == [1, 2]
        assert history[-1].value == pytest.approx(t.user_attrs["curve"][-1]["val_acc"])
        assert run.data.metrics["value"] == pytest.approx(t.value)


def test_tensorboard_gets_per_epoch_scalars_and_hparams(
    tmp_path: Path, synthetic_npz: Path
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    prepare_search(settings(tmp_path, synthetic_npz, tensorboard=tmp_path / "tb")).run()
    for t in trials(tmp_path):
        events = EventAccumulator(str(tmp_path / "tb" / "tracked" / f"trial-{t.number:05d}"))
        events.Reload()
        val = events.Scalars("val_acc")
        assert [e.step for e in val] == [1, 2]
        assert val[-1].value == pytest.approx(t.user_attrs["curve"][-1]["val_acc"], abs=1e-6)
        assert events.PluginTagToContent("hparams")  # the HPARAMS tab's experiment and trial
        assert "hparam/val_acc" in events.Tags()["scalars"]


class Broken(Tracker):
    def __init__(self) -> None:
        self.calls = 0

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self.calls += 1
        raise ConnectionError("tracking server went away")


class Counting(Tracker):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def start(self, number: int, params: dict[str, Any]) -> None:
        self.seen.append(("start", number))

    def end(self, trial: FrozenTrial) -> None:
        self.seen.append(("end", trial.number))


def test_a_failing_tracker_is_named_once_and_dropped_and_the_search_goes_on(
    tmp_path: Path, synthetic_npz: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken, counting = Broken(), Counting()
    search = prepare_search(settings(tmp_path, synthetic_npz))
    search.objective.tracker = Trackers([broken, counting])
    with caplog.at_level(logging.WARNING, logger="cifar_search.search.trackers"):
        result = search.run()
    assert result.finished == 2 and broken.calls == 1
    assert [r.getMessage() for r in caplog.records if "Broken failed" in r.getMessage()] == [
        "Broken failed (ConnectionError: tracking server went away); the search goes on "
        "without it"]
    assert counting.seen == [("start", 0), ("end", 0), ("start", 1), ("end", 1)]


def test_an_interrupted_trials_mlflow_run_is_closed_as_killed(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from cifar_search.search.trackers import MLflowTracker

    tracker = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "s")
    tracker.start(7, {"lr": 0.1})
    run_id = tracker.runs[7]
    tracker.close()
    run = tracker.client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["end"] == "interrupted"


def test_without_mlflow_installed_the_flag_is_one_line_and_no_study_is_created(
    tmp_path: Path, synthetic_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(ConfigError, match=r"pip install 'cifar-search\[mlflow\]'"):
        prepare_search(settings(tmp_path, synthetic_npz, mlflow="sqlite:///mlflow.db"))
    assert not (tmp_path / "t.db").exists()


def test_run_passes_the_tracker_flags(
    tmp_path: Path, synthetic_npz: Path, tiny_space: Path
) -> None:
    pytest.importorskip("tensorboard")
    from cifar_search.cli.main import main

    code = main(["run", "--study", "tracked", "--storage", f"sqlite:///{tmp_path}/t.db",
                 "--trials", "1", "--budget", "smoke", "--epochs", "1", "--space",
                 str(tiny_space), "--data", str(synthetic_npz), "--device", "cpu",
                 "--enqueue-presets", "none", "--no-progress",
                 "--tensorboard", str(tmp_path / "tb")])
    assert code == 0
    assert list((tmp_path / "tb" / "tracked").iterdir())
