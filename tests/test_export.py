"""export: the torch.export and ONNX files predict like the model and load without cifar-search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from datagen import make_images
from torch import nn

from cifar_search.train.config import ModelConfig, OptimConfig, TrainConfig
from cifar_search.train.export import ONNX, PT2, ExportResult, export_model
from cifar_search.train.loader import DeviceLoader
from cifar_search.train.models import create_model
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.trainer import train

# a centre crop (input 28), a hidden layer and dropout: everything Preprocess and Head can do
CFG = TrainConfig(
    model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1), input_size=28, hidden=32,
                      dropout=0.2),
    optim=OptimConfig(lr=0.05, schedule="constant"),
    epochs=2,
    batch_size=100,
)


def as_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor]:
    """A small CNN trained for 2 epochs on generated images (confident, distinct logits)."""
    x, y = make_images(1000, seed=0)
    loader = DeviceLoader(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                          torch.from_numpy(y.astype(np.int64)), CFG.batch_size, shuffle=True)
    torch.manual_seed(0)
    model = create_model(CFG.model)
    train(model, CFG, loader, None, resolve_runtime("cpu"), seed=0)
    test, _ = make_images(64, seed=1)
    return model.eval(), as_float(test)


@pytest.fixture(scope="module")
def exported(
    trained: tuple[nn.Module, torch.Tensor], tmp_path_factory: pytest.TempPathFactory
) -> tuple[ExportResult, Path]:
    model, images = trained
    out = tmp_path_factory.mktemp("export")
    return export_model(model, CFG, out, images=images[:16]), out


def test_both_files_are_written_and_verified(exported: tuple[ExportResult, Path]) -> None:
    result, out = exported
    assert result.paths == {"pt2": out / PT2, "onnx": out / ONNX}
    assert result.checks["onnx"]["exporter"] == "dynamo" and result.notes == []
    for check in result.checks.values():
        assert check["max_abs_diff"] < 1e-4 and check["argmax_agreement"] == 1.0
        assert check["images"] == 16
    info = result.as_dict()
    assert info["files"] == {"pt2": PT2, "onnx": ONNX} and "uint8 / 255" in info["input"]


def test_exports_predict_like_the_model(
    trained: tuple[nn.Module, torch.Tensor], exported: tuple[ExportResult, Path]
) -> None:
    model, images = trained
    _, out = exported
    with torch.no_grad():
        expected = model(images).softmax(1).numpy()
        program = torch.export.load(out / PT2).module()
        for batch in (images, images[:1], images[:7]):  # the batch dimension is dynamic
            got = program(batch).softmax(1).numpy()
            np.testing.assert_allclose(got, expected[: len(batch)], atol=1e-5)
    session = ort.InferenceSession(str(out / ONNX), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, outp.name) == ("images", ["batch", 3, 32, 32], "logits")
    for batch in (images, images[:1], images[:7]):
        (logits,) = session.run(None, {"images": batch.numpy()})
        probs = torch.from_numpy(logits).softmax(1).numpy()
        np.testing.assert_allclose(probs, expected[: len(batch)], atol=1e-5)
        assert (probs.argmax(1) == expected[: len(batch)].argmax(1)).all()


STANDALONE = """
import json, sys
sys.modules["cifar_search"] = None  # any import of cifar_search now fails
import numpy as np, onnxruntime as ort, torch
folder, images = sys.argv[1], np.load(sys.argv[2])
x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255
pt2 = torch.export.load(f"{folder}/model.pt2").module()(torch.from_numpy(x)).detach().numpy()
session = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
(onnx,) = session.run(["logits"], {"images": x})
print(json.dumps({"pt2": pt2.tolist(), "onnx": onnx.tolist()}))
"""


def test_exports_load_without_cifar_search(
    trained: tuple[nn.Module, torch.Tensor], exported: tuple[ExportResult, Path], tmp_path: Path
) -> None:
    model, _ = trained
    _, out = exported
    raw, _ = make_images(20, seed=2)
    np.save(tmp_path / "images.npy", raw)
    command = [sys.executable, "-c", STANDALONE, str(out), str(tmp_path / "images.npy")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        expected = model(as_float(raw)).numpy()
    for name in ("pt2", "onnx"):
        np.testing.assert_allclose(np.array(got[name]), expected, atol=1e-4)


def test_the_legacy_exporter_is_the_noted_fallback(
    trained: tuple[nn.Module, torch.Tensor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, images = trained
    real = torch.onnx.export

    def dynamo_breaks(*args: object, **kwargs: object) -> object:
        if kwargs.get("dynamo"):
            raise RuntimeError("no translation for aten::something")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.onnx, "export", dynamo_breaks)
    model.train()  # the caller's mode and weights are left alone
    result = export_model(model, CFG, tmp_path, images=images[:8])
    assert model.training
    assert result.checks["onnx"]["exporter"] == "legacy"
    assert result.checks["onnx"]["max_abs_diff"] < 1e-4
    assert "dynamo export failed (RuntimeError: no translation" in result.notes[0]
    session = ort.InferenceSession(str(tmp_path / ONNX), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"


def test_tta_exports_average_the_views_and_stale_ones_go(
    trained: tuple[nn.Module, torch.Tensor], tmp_path: Path
) -> None:
    from cifar_search.train.evaluation import tta_logits

    model, images = trained
    model.eval()  # an earlier test leaves it in training mode
    result = export_model(model, CFG.replace(tta="flip"), tmp_path, images=images[:8])
    assert set(result.paths) == {"pt2", "onnx", "pt2_tta", "onnx_tta"}
    session = ort.InferenceSession(str(tmp_path / "model_tta.onnx"),
                                   providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = tta_logits(model, images, "flip").numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    export_model(model, CFG, tmp_path, images=images[:8])  # tta "none": no TTA files
    assert {p.name for p in tmp_path.iterdir()} == {PT2, ONNX}


def test_onnx_can_be_skipped(trained: tuple[nn.Module, torch.Tensor], tmp_path: Path) -> None:
    model, images = trained
    result = export_model(model, CFG, tmp_path, images=images[:4], onnx=False)
    assert set(result.paths) == {"pt2"} and not (tmp_path / ONNX).exists()
    with pytest.raises(ValueError, match=r"\(N >= 2, 3, 32, 32\)"):
        export_model(model, CFG, tmp_path, images=images[:1], onnx=False)
