"""Model folders: round trip through the registry, and every way a folder can be broken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cifar_search.errors import ModelFolderError
from cifar_search.train.checkpoint import (
    CONFIG,
    FORMAT_VERSION,
    METRICS,
    WEIGHTS,
    load_model_folder,
    read_config,
    save_model_folder,
)
from cifar_search.train.config import ModelConfig, TrainConfig
from cifar_search.train.models import create_model

CFG = TrainConfig(
    model=ModelConfig(family="plain_cnn", width=4, depth=(1, 1), hidden=0, dropout=0.0,
                      block_dropout=0.0),
    epochs=3,
)


def _saved(tmp_path: Path, metrics: dict | None = None) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = create_model(CFG.model)
    model(torch.rand(4, 3, 32, 32))  # training-mode pass: BN running stats move off their init
    folder = save_model_folder(tmp_path / "run", model, CFG, metrics or {"val_acc": 0.5})
    return folder, model


def test_round_trip(tmp_path: Path) -> None:
    folder, model = _saved(tmp_path, {"val_acc": 0.5, "val_loss": float("nan"), "curve": (1, 2)})
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG, METRICS, WEIGHTS]
    loaded, cfg, metrics = load_model_folder(folder)
    assert cfg == CFG and read_config(folder) == CFG
    assert metrics == {"val_acc": 0.5, "val_loss": None, "curve": [1, 2]}
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                               strict=True):
        assert k == k2 and torch.equal(a, b), k
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), loaded(x))
    assert json.loads((folder / CONFIG).read_text())["format_version"] == FORMAT_VERSION


def test_channels_last_and_shared_tensors_save(tmp_path: Path) -> None:
    model = create_model(CFG.model).to(memory_format=torch.channels_last)
    save_model_folder(tmp_path / "cl", model, CFG, {})
    assert load_model_folder(tmp_path / "cl")[1] == CFG
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.weight = a.weight  # tied: stored once
    save_model_folder(tmp_path / "tied", nn.Sequential(a, b), CFG, {})
    assert (tmp_path / "tied" / WEIGHTS).is_file()


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="no such model folder"):
        load_model_folder(tmp_path / "nothing")
    folder, _ = _saved(tmp_path)
    (folder / WEIGHTS).unlink()
    with pytest.raises(ModelFolderError, match=f"{WEIGHTS} is missing") as info:
        load_model_folder(folder)
    assert str(folder) in str(info.value)
    (folder / CONFIG).unlink()
    with pytest.raises(ModelFolderError, match=f"{CONFIG} is missing"):
        load_model_folder(folder)


def _edit_config(folder: Path, **changes: object) -> None:
    data = json.loads((folder / CONFIG).read_text())
    data.update(changes)
    (folder / CONFIG).write_text(json.dumps(data))


def test_wrong_format_version(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    _edit_config(folder, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFolderError, match="format_version") as info:
        load_model_folder(folder)
    assert str(folder) in str(info.value)


def test_unparsable_or_invalid_config(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    (folder / CONFIG).write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        load_model_folder(folder)
    folder, _ = _saved(tmp_path)
    _edit_config(folder, learning_rate=0.1)
    with pytest.raises(ModelFolderError, match="unknown key learning_rate"):
        load_model_folder(folder)
    (folder / CONFIG).write_text("[1, 2]")
    with pytest.raises(ModelFolderError, match="JSON object"):
        load_model_folder(folder)


def test_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    _edit_config(folder, model={**CFG.to_dict()["model"], "width": 8})
    with pytest.raises(ModelFolderError, match="do not load into plain_cnn"):
        load_model_folder(folder)
    (folder / WEIGHTS).write_bytes(b"garbage")
    with pytest.raises(ModelFolderError, match=WEIGHTS):
        load_model_folder(folder)


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        (CONFIG, "delete", f"{CONFIG} is missing"),
        (WEIGHTS, "delete", f"{WEIGHTS} is missing"),
        (WEIGHTS, "truncate", f"{WEIGHTS}: truncated or corrupt, not a readable safetensors"),
        (CONFIG, "truncate", f"{CONFIG}: truncated or corrupt, not valid JSON"),
        (METRICS, "truncate", f"{METRICS}: truncated or corrupt, not valid JSON"),
    ],
)
def test_predict_names_a_missing_or_truncated_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, damage: str, message: str
) -> None:
    from PIL import Image

    from cifar_search.cli.main import main

    folder, _ = _saved(tmp_path)
    image = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(image)
    assert main(["predict", "--model", str(folder), str(image)]) == 0
    capsys.readouterr()
    path = folder / name
    if damage == "delete":
        path.unlink()
    else:  # what a writer killed mid-write without atomic renames would have left
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert main(["predict", "--model", str(folder), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cifar-search predict: error: ") and err.count("\n") == 1
    assert message in err and str(folder) in err
