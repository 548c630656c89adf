"""retrain: a real small study (the search, smoke budget, generated data), then retrain from it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from datagen import write_npz
from optuna.trial import TrialState

from cifar_search.errors import ConfigError, StudyError
from cifar_search.search.retrain import (
    OnEpoch,
    RetrainSettings,
    RetrainTarget,
    config_differences,
    resolve_target,
    retrain,
)
from cifar_search.search.space import DEFAULT_SPACE, Space
from cifar_search.search.space_file import apply_overrides, dump_space
from cifar_search.train.checkpoint import load_model_folder
from cifar_search.train.config import ModelConfig, TrainConfig
from cifar_search.train.presets import Preset
from cifar_search.train.trainer import EpochMetrics

STUDY = "small"
# plain CNN, 16 channels, batch 64, SGD at a sane lr: seconds per trial on 2 CPU cores; the
# floats left free (lr, momentum, dropout, ...) make the config replay a real check.
TINY = {
    "params": {
        "family": {"value": "plain_cnn"}, "width": {"value": 16},
        "depth_plain": {"value": "1-1-1"}, "input_size": {"value": 32}, "hidden": {"value": 0},
        "batch_size": {"value": 64}, "auto_augment": {"value": "none"},
        "rotate": {"value": False}, "optimizer": {"value": "sgd"},
        "lr_sgd": {"low": 0.05, "high": 1.0}, "use_mixup": {"value": False},
        "use_cutmix": {"value": False}, "tta": {"value": "none"},
    }
}


def tiny_space() -> Space:
    return apply_overrides(DEFAULT_SPACE, TINY)


def make_small_study(folder: Path, data: Path, trials: int = 2) -> str:
    """Run the real search (smoke budget) into ``folder/s.db``; returns the storage URL."""
    from cifar_search.search.launch import SearchSettings, prepare_search

    url = f"sqlite:///{folder}/s.db"
    settings = SearchSettings(study=STUDY, storage=url, trials=trials, budget="smoke",
                              data=data, space=tiny_space(), pruner="none", device="cpu",
                              progress=False, heartbeat=None)
    prepare_search(settings).run()
    return url


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "cifar10.npz", 2000, 500, seed=0)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, data: Path) -> str:
    return make_small_study(tmp_path_factory.mktemp("study"), data)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, storage: str, data: Path) -> Path:
    """Retrain the best trial: 1 epoch, 2 seeds, with exports."""
    target = resolve_target("best", study=STUDY, storage=storage, epochs=1)
    out = tmp_path_factory.mktemp("runs") / "best"
    retrain(target, RetrainSettings(seeds=2, out=out, data=data, device="cpu"))
    return out


def copy_storage(storage: str, tmp_path: Path) -> str:
    """A private copy of a SQLite study (the backup API: the WAL's pages come along)."""
    dest = tmp_path / "copy.db"
    with sqlite3.connect(storage.removeprefix("sqlite:///")) as src, sqlite3.connect(dest) as dst:
        src.backup(dst)
    return f"sqlite:///{dest}"


def test_rebuilds_exactly_the_stored_config(storage: str) -> None:
    study = optuna.load_study(study_name=STUDY, storage=storage)
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        target = resolve_target(str(trial.number), study=STUDY, storage=storage)
        stored = TrainConfig.from_dict(trial.user_attrs["config"])
        assert target.config.epochs == 2  # the smoke budget's retrain_epochs
        assert "retrain_epochs = 2" in target.epochs_source
        assert target.config.replace(epochs=stored.epochs) == stored
        assert config_differences(target.config.replace(epochs=stored.epochs), stored) == []
    longer = resolve_target("best", study=STUDY, storage=storage, epochs=7)
    assert longer.config.epochs == 7 and longer.epochs_source == "--epochs"
    assert longer.folder_name == f"trial-{study.best_trial.number}"


def test_a_space_that_no_longer_rebuilds_the_config_is_refused(
    storage: str, tmp_path: Path
) -> None:
    url = copy_storage(storage, tmp_path)
    study = optuna.load_study(study_name=STUDY, storage=url)
    changed = apply_overrides(tiny_space(), {"params": {"width": {"value": 32}}})
    study.set_user_attr("space", dump_space(changed))
    with pytest.raises(StudyError, match=r"model\.width: 32 != 16"):
        resolve_target("best", study=STUDY, storage=url)


def test_retrain_writes_every_file(retrained: Path, storage: str, data: Path) -> None:
    names = {p.name for p in retrained.iterdir()}
    assert {"model.safetensors", "config.json", "metrics.json", "misclassified.npz",
            "model.pt2", "model.onnx", "MODEL.md", "seed-1"} <= names
    m = json.loads((retrained / "metrics.json").read_text())
    assert m["seeds"] == [0, 1] and len(m["test_acc"]) == 2 and m["model_seed"] == 0
    assert m["test_acc_mean"] == pytest.approx(np.mean(m["test_acc"]))
    assert m["test_acc_std"] == pytest.approx(np.std(m["test_acc"], ddof=1))
    assert set(m["curves"]) == {"0", "1"} and len(m["curves"]["0"]) == 1
    assert m["epochs"] == m["curves"]["0"] and m["epoch_budget"] == 1
    assert "val_acc" not in m["epochs"][0]  # no validation set while retraining
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 500 and len(m["per_class_acc"]) == 10
    assert np.trace(cm) / 500 == pytest.approx(m["test_acc"][0])
    assert m["classes"][3] == "cat" and m["data"]["train_size"] == 2000
    assert m["data"]["source"] == str(data) and m["data"]["validation"] is None
    assert m["device"]["device"] == "cpu" and "torch" in m["versions"] and m["wall_seconds"] > 0
    for check in m["exports"]["checks"].values():
        assert check["max_abs_diff"] < 1e-3 and check["argmax_agreement"] == 1.0
    with np.load(retrained / "misclassified.npz") as mis:
        n = len(mis["true"])
        assert mis["images"].dtype == np.uint8 and mis["images"].shape == (n, 32, 32, 3)
        assert n == min(64, round(500 * (1 - m["test_acc"][0])))
        assert (mis["true"] != mis["pred"]).all()
    card = (retrained / "MODEL.md").read_text()
    assert f"{100 * m['test_acc_mean']:.2f}%" in card and "onnxruntime" in card
    assert "torch.export.load" in card and "uint8" in card


def test_saved_model_reproduces_the_reported_test_accuracy(retrained: Path, data: Path) -> None:
    model, cfg, metrics = load_model_folder(retrained)
    with np.load(data) as d:
        x = d["test_x"].transpose(0, 3, 1, 2).astype(np.float32) / 255
        y = d["test_y"].astype(np.int64)
    import torch

    from cifar_search.train.runtime import resolve_runtime

    # the accuracy was measured under the precision the card names: bf16 autocast on CPUs with
    # bf16 units. The same precision reproduces it exactly; fp32 moves borderline images only.
    precision = "bf16" if metrics["device"]["precision"] == "bfloat16" else "fp32"
    rt = resolve_runtime("cpu", precision)  # type: ignore[arg-type]
    images = torch.from_numpy(x).contiguous(memory_format=rt.memory_format)
    with torch.no_grad():
        with rt.autocast():
            pred = model(images).argmax(1).numpy()
        pred_fp32 = model(torch.from_numpy(x)).argmax(1).numpy()
    assert (pred == y).mean() == pytest.approx(metrics["test_acc"][0], abs=1e-6)
    assert (pred_fp32 == y).mean() == pytest.approx(metrics["test_acc"][0], abs=0.01)
    _, _, seed_metrics = load_model_folder(retrained / "seed-1")
    assert seed_metrics["seed"] == 1 and seed_metrics["test_acc"] == metrics["test_acc"][1]
    assert cfg.epochs == 1


def test_results_are_recorded_on_the_study(retrained: Path, storage: str) -> None:
    study = optuna.load_study(study_name=STUDY, storage=storage)
    record = study.user_attrs[f"retrain:{study.best_trial.number}"]
    metrics = json.loads((retrained / "metrics.json").read_text())
    assert record["test_acc"] == metrics["test_acc"] and record["seeds"] == [0, 1]
    assert record["test_acc_mean"] == metrics["test_acc_mean"] and record["epochs"] == 1
    assert Path(record["run_dir"]) == retrained.resolve() and record["wall_seconds"] > 0


def test_preset_with_a_study_is_recorded_under_its_name(
    storage: str, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = TrainConfig(model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1)),
                       batch_size=128, epochs=3)
    monkeypatch.setattr("cifar_search.search.retrain.get_preset",
                        lambda name: Preset(name, tiny, "test", "none", "tiny"))
    url = copy_storage(storage, tmp_path)
    target = resolve_target(preset="tiny", study=STUDY, storage=url)
    assert target.config.epochs == 3 and "preset's own" in target.epochs_source
    assert target.default_run_dir() == Path("runs") / STUDY / "preset-tiny"
    result = retrain(resolve_target(preset="tiny", study=STUDY, storage=url, epochs=1),
                     RetrainSettings(out=tmp_path / "p", data=data, device="cpu", export=False))
    study = optuna.load_study(study_name=STUDY, storage=url)
    assert study.user_attrs["retrain:preset:tiny"]["test_acc"] == result.test_acc
    assert not (tmp_path / "p" / "model.onnx").exists()
    alone = resolve_target(preset="tiny")
    assert alone.record_key is None and alone.default_run_dir() == Path("runs/presets/preset-tiny")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"which": "99"}, StudyError, "has no trial 99"),
        ({"which": "best", "study": "nope"}, StudyError, "no study named 'nope'"),
        ({"which": "first"}, ConfigError, "'best' or a trial number"),
        ({}, ConfigError, "not neither"),
        ({"which": "best", "preset": "davidnet"}, ConfigError, "not both"),
        ({"preset": "no-such-preset"}, ConfigError, "unknown preset 'no-such-preset'"),
        ({"which": "best", "epochs": 0}, ConfigError, "epochs must be >= 1"),
    ],
)
def test_bad_targets_raise_one_clear_error(
    storage: str, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    args = {"study": STUDY, "storage": storage} if "preset" not in kwargs else {}
    with pytest.raises(error, match=message):
        resolve_target(**{**args, **kwargs})  # type: ignore[arg-type]


def test_failed_trials_are_not_retrained(storage: str, tmp_path: Path) -> None:
    url = copy_storage(storage, tmp_path)
    study = optuna.load_study(study_name=STUDY, storage=url)
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    with pytest.raises(StudyError, match=rf"trial {trial.number} .* ended 'fail'"):
        resolve_target(str(trial.number), study=STUDY, storage=url)


def test_epoch_images_trains_each_epoch_on_a_fresh_subset(data: Path, tmp_path: Path) -> None:
    tiny = TrainConfig(model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1)),
                       batch_size=128, epochs=2)
    target = RetrainTarget("tiny", "test", tiny, "test")
    result = retrain(target, RetrainSettings(out=tmp_path / "r", data=data, device="cpu",
                                             export=False, epoch_images=512))
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["data"]["epoch_images"] == 512
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and result.epochs == 2
    assert "512 of them" in (tmp_path / "r" / "MODEL.md").read_text()
    with pytest.raises(ConfigError, match="at least one batch"):
        retrain(target, RetrainSettings(out=tmp_path / "s", data=data, device="cpu",
                                        export=False, epoch_images=100))


def test_a_deadline_paces_the_epochs_after_the_first(data: Path, tmp_path: Path) -> None:
    """A deadline already reached leaves every epoch after the first one batch; the schedule
    still ends at the epoch budget and the run folder says how many images each epoch saw."""
    import time

    tiny = TrainConfig(model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1)),
                       batch_size=128, epochs=3)
    target = RetrainTarget("tiny", "test", tiny, "test")
    retrain(target, RetrainSettings(out=tmp_path / "r", data=data, device="cpu", export=False,
                                    deadline=time.monotonic()))
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["data"]["paced"] is True
    assert metrics["data"]["epoch_images_run"] == [1920, 128, 128]  # 2,000 images, whole batches
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert "1,920, 128, 128 images" in (tmp_path / "r" / "MODEL.md").read_text()
    # two seeds under one deadline: each is paced to its share (here none is left: one batch)
    two = retrain(target, RetrainSettings(seeds=2, out=tmp_path / "s", data=data, device="cpu",
                                          export=False, deadline=time.monotonic()))
    assert two.seeds == [0, 1] and two.metrics["data"]["paced"] is True
    assert [len(c) for c in two.metrics["curves"].values()] == [3, 3]


class Stop(Exception):
    """What a test raises to stop a retraining (Ctrl-C in real use)."""


TINY_CFG = TrainConfig(model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1)),
                       batch_size=128, epochs=3)


def _resumable(out: Path, data: Path, **kw: object) -> RetrainSettings:
    """Settings whose resume file is written after every epoch (no timing in the test)."""
    base: dict[str, object] = dict(out=out, data=data, device="cpu", export=False,
                                   checkpoint_every=0.0)
    return RetrainSettings(**{**base, **kw})  # type: ignore[arg-type]


def _stop_at(seed: int, epoch: int, seen: list[tuple[int, int]] | None = None) -> OnEpoch:
    def hook(s: int, e: int, m: EpochMetrics) -> None:
        if seen is not None:
            seen.append((s, e))
        if (s, e) == (seed, epoch):
            raise Stop
    return hook


def test_a_stopped_retraining_goes_on_where_it_was(data: Path, tmp_path: Path) -> None:
    """Stopped in the second seed's second epoch, run again: the first seed is neither trained
    nor tested again, the second goes on from its first epoch, and every number and weight is
    the one a run that never stopped gives."""
    target = RetrainTarget("tiny", "test", TINY_CFG, "test")
    whole = retrain(target, _resumable(tmp_path / "whole", data, seeds=2))
    out = tmp_path / "r"
    with pytest.raises(Stop):
        retrain(target, _resumable(out, data, seeds=2), on_epoch=_stop_at(1, 2))
    assert sorted(p.name for p in (out / "resume").iterdir()) == ["seed-0.pt", "seed-1.pt"]
    assert not (out / "metrics.json").exists()
    seen: list[tuple[int, int]] = []
    again = retrain(target, _resumable(out, data, seeds=2), on_epoch=_stop_at(-1, -1, seen))
    assert seen == [(1, 2), (1, 3)]
    assert again.test_acc == whole.test_acc and again.test_acc_single == whole.test_acc_single
    for sub in ("", "seed-1"):
        a, _, ma = load_model_folder(out / sub)
        b, _, mb = load_model_folder(tmp_path / "whole" / sub)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y)
        assert [e["train_loss"] for e in ma["epochs"]] == [e["train_loss"] for e in mb["epochs"]]
    assert not (out / "resume").exists()  # the run folder is complete: nothing to resume


@pytest.mark.parametrize("change", ["resume=False", "another config"])
def test_resume_false_or_another_config_starts_again(data: Path, tmp_path: Path,
                                                     change: str) -> None:
    out = tmp_path / "r"
    with pytest.raises(Stop):
        retrain(RetrainTarget("tiny", "test", TINY_CFG, "test"), _resumable(out, data),
                on_epoch=_stop_at(0, 2))
    cfg = TINY_CFG.replace(epochs=2) if change == "another config" else TINY_CFG
    seen: list[tuple[int, int]] = []
    retrain(RetrainTarget("tiny", "test", cfg, "test"),
            _resumable(out, data, resume=change != "resume=False"),
            on_epoch=_stop_at(-1, -1, seen))
    assert seen == [(0, e) for e in range(1, cfg.epochs + 1)]
