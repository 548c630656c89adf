"""`cifar-search train` and `cifar-search lr-find` through the real entry point."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cifar_search.cli.main import main
from cifar_search.train.checkpoint import load_model_folder


def test_train_writes_a_model_folder(tmp_path: Path, synthetic_npz: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["train", "--preset", "rdfia-alexnet", "--data", str(synthetic_npz),
                 "--epochs", "1", "--train-subset", "500", "--device", "cpu", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    assert "rdfia-alexnet: val acc" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["preset"] == "rdfia-alexnet" and metrics["seed"] == 0
    assert metrics["config"]["epochs"] == 1 and len(metrics["epochs"]) == 1
    assert 0 <= metrics["final"]["final_val_acc"] <= 1
    assert metrics["data"] == {"source": str(synthetic_npz.resolve()), "train_size": 500,
                               "val_size": 200, "test_set_used": False}
    assert metrics["device"]["device"] == "cpu" and "torch" in metrics["versions"]
    assert metrics["wall_seconds"] > 0 and metrics["n_params"] > 0
    _, cfg, saved = load_model_folder(out)
    assert cfg.model.family == "alexnet" and cfg.epochs == 1
    assert saved["final"] == metrics["final"]


def test_config_file_overrides_the_preset(tmp_path: Path, synthetic_npz: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"optim": {"lr": 0.01}, "model": {"hidden": 64}}))
    out = tmp_path / "run"
    code = main(["train", "--preset", "rdfia-alexnet", "--config", str(config), "--data",
                 str(synthetic_npz), "--epochs", "2", "--batch-size", "100", "--train-subset",
                 "300", "--val-size", "100", "--seed", "5", "--device", "cpu", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    cfg = load_model_folder(out)[1]
    assert (cfg.optim.lr, cfg.model.hidden, cfg.epochs, cfg.batch_size) == (0.01, 64, 2, 100)
    assert cfg.optim.schedule == "exponential"  # the rest of the preset stays
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 5 and metrics["data"]["val_size"] == 100
    assert [e["lr"] for e in metrics["epochs"]] == pytest.approx([0.01, 0.01 * 0.95])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give --preset NAME"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--config", "missing.json"], "--config missing.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, synthetic_npz: Path, capsys: pytest.CaptureFixture[str],
    extra: list[str], message: str,
) -> None:
    code = main(["train", *extra, "--data", str(synthetic_npz), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_unknown_config_key_is_named(tmp_path: Path, synthetic_npz: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"optim": {"learning_rate": 0.01}}))
    code = main(["train", "--preset", "rdfia-alexnet", "--config", str(config), "--data",
                 str(synthetic_npz), "--out", str(tmp_path / "o")])
    assert code == 2 and "optim.learning_rate" in capsys.readouterr().err


def test_lr_find_prints_a_suggestion(tmp_path: Path, synthetic_npz: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "lr.html"
    code = main(["lr-find", "--preset", "rdfia-alexnet", "--data", str(synthetic_npz),
                 "--train-subset", "400", "--batch-size", "16", "--steps", "12", "--device",
                 "cpu", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    assert "rdfia-alexnet: suggested lr" in out and "curve: " in out
    assert plot.is_file()


SMALL_CNN = {  # ~6 MFLOPs per image: 3 epochs of 5000 images take seconds on 2 cores
    "model": {"family": "plain_cnn", "width": 16, "depth": [1, 1, 1], "hidden": 0,
              "dropout": 0.0, "block_dropout": 0.0, "input_size": 32},
    "augment": {"crop_padding": 2, "flip": "random"},
    "optim": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
              "weight_decay": 5e-4, "schedule": "onecycle", "pct_start": 0.25},
    "batch_size": 64,
    "epochs": 3,
}


@pytest.mark.slow
def test_real_data_learns(tmp_path: Path, real_npz: Path) -> None:
    """5000 real training images, 3 epochs of a small CNN on CPU: well above chance (10%).

    Measured 54.9% validation accuracy (2000 images).
    """
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL_CNN))
    out = tmp_path / "real"
    start = time.perf_counter()
    code = main(["train", "--config", str(config), "--data", str(real_npz),
                 "--train-subset", "5000", "--val-size", "2000", "--device", "cpu",
                 "--no-progress", "--out", str(out)])
    seconds = time.perf_counter() - start
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["final_val_acc"] > 0.35, (seconds, metrics["epochs"])
    assert metrics["data"]["train_size"] == 5000 and not metrics["data"]["test_set_used"]


def test_inline_config_and_dotted_sets() -> None:
    from cifar_search.cli._config import apply_sets, load_config
    from cifar_search.errors import ConfigError

    cfg, name = load_config("fast94", '{"lookahead": 0}', None, None,
                            ["optim.lr=1.2", "augment.cutout=8", "tta=flip"])
    assert name == "fast94" and cfg.lookahead == 0 and cfg.optim.lr == 1.2
    assert cfg.augment.cutout == 8 and cfg.tta == "flip"
    for bad, message in [("optim.lrr=1", "unknown field 'lrr' in optim"),
                         ("nope.lr=1", "'nope.lr' is not a TrainConfig field"),
                         ("optim.lr", "KEY=VALUE"), ("augment.cutout=big", "cutout")]:
        with pytest.raises(ConfigError, match=message):
            apply_sets(cfg, [bad])
    with pytest.raises(ConfigError, match="inline JSON does not parse"):
        load_config("fast94", "{lookahead: 0}", None, None)


def test_retrain_set_refuses_an_unknown_field_before_training(
        synthetic_npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cifar_search.cli.main import main

    assert main(["retrain", "--preset", "fast94", "--set", "optim.lrr=1", "--data",
                 str(synthetic_npz), "--no-progress"]) == 2
    assert "unknown field 'lrr' in optim" in capsys.readouterr().err


@pytest.mark.parametrize("restart", [False, True])
def test_a_stopped_training_goes_on_when_run_again_unless_restarted(
        tmp_path: Path, synthetic_npz: Path, capsys: pytest.CaptureFixture[str],
        restart: bool) -> None:
    """The stop is made through the library (the same training, a resume file after every
    epoch, a hook raising after epoch 2); the command line then goes on from epoch 1 and
    trains what the uninterrupted command trains, epoch for epoch."""
    from cifar_search.cli._config import load_config
    from cifar_search.cli.train import RESUME_FILE, resume_meta
    from cifar_search.train.data import load_cifar10
    from cifar_search.train.recipe import DataSpec, prepare, split
    from cifar_search.train.resume import Checkpoint, State
    from cifar_search.train.runtime import resolve_runtime
    from cifar_search.train.trainer import EpochMetrics, train

    args = ["train", "--preset", "rdfia-alexnet", "--data", str(synthetic_npz), "--epochs", "3",
            "--train-subset", "500", "--device", "cpu", "--precision", "fp32", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    cfg, _ = load_config("rdfia-alexnet", None, 3, None, [])
    runtime = resolve_runtime("cpu", "fp32")
    data = split(load_cifar10(synthetic_npz), DataSpec(train_subset=500), runtime.device)
    p = prepare(cfg, data, runtime, seed=0)
    out = tmp_path / "stopped"
    ckpt = Checkpoint(out / RESUME_FILE, resume_meta(cfg, 0, data), every_s=0)

    def stop(epoch: int, m: EpochMetrics) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    def keep(epoch: int, state: Callable[[], State]) -> None:
        ckpt.offer(epoch, state)

    with pytest.raises(KeyboardInterrupt):
        train(p.model, cfg, p.train_loader, p.val_loader, runtime, seed=0, on_epoch_end=stop,
              on_state=keep)
    capsys.readouterr()
    assert main([*args, "--out", str(out), *(["--restart"] if restart else [])]) == 0
    said = capsys.readouterr().err
    assert ("going on after epoch 1 of 3" in said) is not restart
    assert not (out / "resume").exists()  # finished: nothing left to resume
    straight, again = (json.loads((tmp_path / d / "metrics.json").read_text())["epochs"]
                       for d in ("straight", "stopped"))
    assert [e["train_loss"] for e in again] == [e["train_loss"] for e in straight]
    assert [e["val_acc"] for e in again] == [e["val_acc"] for e in straight]
