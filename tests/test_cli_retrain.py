"""`cifar-search retrain` and `cifar-search predict` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from datagen import CLASSES, make_images, write_npz
from PIL import Image
from test_retrain import STUDY, copy_storage, make_small_study

from cifar_search.cli.main import main
from cifar_search.search.retrain import RetrainSettings, resolve_target, retrain
from cifar_search.train.trainer import EpochMetrics


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "cifar10.npz", 2000, 500, seed=0)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, data: Path) -> str:
    return make_small_study(tmp_path_factory.mktemp("study"), data)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, storage: str, data: Path) -> Path:
    """`retrain best` with the study's own retrain budget (smoke: 2 epochs), no exports."""
    out = tmp_path_factory.mktemp("runs") / "best"
    code = main(["retrain", "best", "--study", STUDY, "--storage", storage, "--data", str(data),
                 "--device", "cpu", "--out", str(out), "--no-export", "--no-progress"])
    assert code == 0
    return out


def test_retrain_prints_budget_result_and_records_it(
    storage: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["retrain", "best", "--study", STUDY, "--storage", storage, "--data", str(data),
            "--device", "cpu", "--out", str(out), "--no-export", "--no-progress", "--seeds", "2",
            "--epochs", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    best = optuna.load_study(study_name=STUDY, storage=storage).best_trial.number
    assert f"retrain trial {best} of study '{STUDY}' (plain_cnn): 1 epochs (--epochs)" in text
    assert "x 2 seed(s)" in text and "seed 0 " in text and "seed 1 " in text
    assert "test accuracy" in text and "±" in text and "device cpu" in text
    assert "wall time" in text and f"recorded as retrain:{best}" in text
    record = optuna.load_study(study_name=STUDY, storage=storage).user_attrs[f"retrain:{best}"]
    assert record["seeds"] == [0, 1] and record["epochs"] == 1
    assert main(["status", "--study", STUDY, "--storage", storage]) == 0
    assert "test acc" in capsys.readouterr().out


def test_default_budget_comes_from_the_study(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epoch_budget"] == 2 and len(metrics["epochs"]) == 2
    assert "budget 'smoke': retrain_epochs = 2" in metrics["epoch_budget_source"]
    assert not (run_dir / "model.onnx").exists() and (run_dir / "MODEL.md").exists()


def test_predict_on_the_retrained_folder(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, _ = make_images(2, seed=3)
    paths = []
    for i, (image, size) in enumerate(zip(images, [(57, 41), (90, 90)], strict=True)):
        path = tmp_path / f"x{i}.{'png' if i else 'jpg'}"
        Image.fromarray(image).resize(size).save(path)
        paths.append(str(path))
    capsys.readouterr()
    assert main(["predict", "--model", str(run_dir), *paths, "--top", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [item["image"] for item in out] == paths
    assert all(len(item["top"]) == 2 and item["top"][0]["class"] in CLASSES for item in out)
    assert main(["predict", "--model", str(run_dir), paths[0]]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{paths[0]}: ") and line.count("%") == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["99"], "has no trial 99"),
        (["best", "--study", "nope"], "no study named 'nope'"),
        (["first"], "'best' or a trial number"),
        ([], "not neither"),
        (["best", "--preset", "davidnet"], "not both"),
        (["--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
    ],
)
def test_retrain_errors_are_one_line_exit_2(
    storage: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    study = [] if "--study" in args else ["--study", STUDY]
    code = main(["retrain", *args, *study, "--storage", storage, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert err.startswith("cifar-search retrain: error:") and err.count("\n") == 1


def test_predict_errors_are_one_line_exit_2(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "readme.jpg"
    text.write_text("not an image")
    assert main(["predict", "--model", str(run_dir), str(text)]) == 2
    err = capsys.readouterr().err
    assert f"{text}: not an image" in err and err.count("\n") == 1
    old = tmp_path / "old"
    old.mkdir()
    for name in ("model.safetensors", "metrics.json"):
        (old / name).write_bytes((run_dir / name).read_bytes())
    config = json.loads((run_dir / "config.json").read_text()) | {"format_version": 0}
    (old / "config.json").write_text(json.dumps(config))
    assert main(["predict", "--model", str(old), str(text)]) == 2
    assert "format_version 0 is not supported" in capsys.readouterr().err


def test_retrain_json(tmp_path: Path, synthetic_npz: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retrain", "--preset", "rdfia-alexnet", "--epochs", "1", "--data",
                 str(synthetic_npz), "--device", "cpu", "--out", str(tmp_path / "m"),
                 "--no-export", "--no-progress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 <= out["test_acc_mean"] <= 1 and out["epochs"] == 1 and out["record_key"] is None
    assert out["run_dir"] == str((tmp_path / "m").resolve())


@pytest.mark.parametrize("restart", [False, True])
def test_a_stopped_retrain_goes_on_when_run_again_unless_restarted(
        storage: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        restart: bool) -> None:
    """The stop is made through the library (a hook raising after epoch 2, a resume file after
    every step); the same command line then finds the file and goes on inside epoch 2."""
    url = copy_storage(storage, tmp_path)
    out = tmp_path / "run"
    target = resolve_target("best", study=STUDY, storage=url, epochs=3)

    def stop(seed: int, epoch: int, m: EpochMetrics) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retrain(target, RetrainSettings(out=out, data=data, device="cpu", export=False,
                                        checkpoint_every=0.0), on_epoch=stop)
    assert (out / "resume" / "seed-0.pt").is_file()
    args = ["retrain", "best", "--study", STUDY, "--storage", url, "--data", str(data),
            "--device", "cpu", "--out", str(out), "--no-export", "--no-progress", "--epochs", "3"]
    assert main(args + (["--restart"] if restart else [])) == 0
    text = capsys.readouterr().out
    # stopped at epoch 2's end, before its end-of-epoch state: the last one was written after
    # its last batch but one
    assert ("seed 0: going on in epoch 2 of 3, after batch" in text) is not restart
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 3
    assert not (out / "resume").exists()
