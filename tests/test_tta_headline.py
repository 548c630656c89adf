"""One headline any client reproduces: retrain reports the accuracy with test-time augmentation
and with one view; ``model_tta.onnx`` and ``model.onnx``, run by onnxruntime alone, give them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from datagen import write_npz
from PIL import Image

from cifar_search.cli.main import main
from cifar_search.train.config import ModelConfig, OptimConfig, TrainConfig
from cifar_search.train.evaluation import TTAModel, tta_logits
from cifar_search.train.export import ONNX, ONNX_TTA, PT2, PT2_TTA
from cifar_search.train.models import create_model
from cifar_search.train.predict import load_predictor
from cifar_search.train.presets import Preset

# one quick epoch of a tiny CNN: accurate enough that flips and shifts change some answers
TINY = TrainConfig(model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1)),
                   optim=OptimConfig(lr=0.2), batch_size=128, epochs=1, tta="flip_translate")

# evaluates the two ONNX files with onnxruntime and numpy only: cifar_search cannot be imported
ONNX_ONLY = """
import json, sys
sys.modules["cifar_search"] = None
import numpy as np, onnxruntime as ort
folder, data = sys.argv[1], np.load(sys.argv[2])
x = data["test_x"].transpose(0, 3, 1, 2).astype(np.float32) / 255
y = data["test_y"].astype(np.int64)
acc = {}
for name in ("model.onnx", "model_tta.onnx"):
    session = ort.InferenceSession(f"{folder}/{name}", providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": x})
    acc[name] = float((logits.argmax(1) == y).mean())
print(json.dumps(acc))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "cifar10.npz", 2000, 500, seed=0)


@pytest.fixture(scope="module")
def retrained(
    tmp_path_factory: pytest.TempPathFactory, data: Path
) -> Iterator[tuple[Path, str]]:
    """`cifar-search retrain --preset tiny` (fp32, 2 seeds) and what it printed."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cifar_search.search.retrain.get_preset",
                   lambda name: Preset(name, TINY, "test", "none", "tiny"))
        buf = io.StringIO()
        with redirect_stdout(buf):
            code = main(["retrain", "--preset", "tiny", "--data", str(data), "--device", "cpu",
                         "--precision", "fp32", "--seeds", "2", "--out", str(out),
                         "--no-progress"])
    assert code == 0
    yield out, buf.getvalue()


def test_both_onnx_files_reproduce_the_reported_accuracies(
    retrained: tuple[Path, str], data: Path
) -> None:
    out, _ = retrained
    metrics = json.loads((out / "metrics.json").read_text())
    proc = subprocess.run([sys.executable, "-c", ONNX_ONLY, str(out), str(data)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # the run folder's model is the first seed's
    assert got["model_tta.onnx"] == pytest.approx(metrics["test_acc"][0], abs=0.001)
    assert got["model.onnx"] == pytest.approx(metrics["test_acc_single"][0], abs=0.001)


def test_metrics_and_result_line_give_both_numbers(retrained: tuple[Path, str]) -> None:
    out, printed = retrained
    m = json.loads((out / "metrics.json").read_text())
    single = m["test_acc_single"]
    assert len(single) == 2 and m["test_acc_single_mean"] == pytest.approx(np.mean(single))
    assert m["test_acc_single_std"] == pytest.approx(np.std(single, ddof=1))
    assert m["test_acc_mean"] == pytest.approx(np.mean(m["test_acc"]))
    assert {PT2, ONNX, PT2_TTA, ONNX_TTA} <= {p.name for p in out.iterdir()}
    assert set(m["exports"]["checks"]) == {"pt2", "onnx", "pt2_tta", "onnx_tta"}
    for check in m["exports"]["checks"].values():
        assert check["max_abs_diff"] < 1e-3 and check["argmax_agreement"] == 1.0
    tta = f"{100 * m['test_acc_mean']:.2f}% ± {100 * m['test_acc_std']:.2f} with TTA"
    one = f"{100 * m['test_acc_single_mean']:.2f}% ± {100 * m['test_acc_single_std']:.2f} one view"
    line = next(x for x in printed.splitlines() if x.startswith("test accuracy"))
    assert tta in line and one in line and "flip_translate (model_tta.onnx)" in line
    card = (out / "MODEL.md").read_text()
    assert tta.replace(" with TTA", "") in card and f"`{ONNX_TTA}`" in card
    assert one.replace(" one view", "") in card and "predict --tta none" in card
    seed1 = json.loads((out / "seed-1" / "metrics.json").read_text())
    assert seed1["test_acc_single"] == single[1] and seed1["test_acc"] == m["test_acc"][1]


def test_predict_uses_the_model_tta_unless_told_not_to(
    retrained: tuple[Path, str], data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = retrained
    with np.load(data) as d:
        images = d["test_x"][:64]
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255
    default, plain = load_predictor(out), load_predictor(out, tta="none")
    assert (default.views, plain.views) == ("flip_translate", "none")
    with torch.no_grad():
        want_tta = tta_logits(default.model, x, "flip_translate").softmax(1).numpy()
        want_one = default.model(x).softmax(1).numpy()
    np.testing.assert_allclose(default.predict_arrays(images), want_tta, atol=1e-5)
    np.testing.assert_allclose(plain.predict_arrays(images), want_one, atol=1e-5)
    with pytest.raises(ValueError, match="tta must be model or none, but got 'flip'"):
        load_predictor(out, tta="flip")  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "--tta {model,none}" in capsys.readouterr().out
    png = tmp_path / "x.png"
    Image.fromarray(images[0]).save(png)  # 32 x 32: the pixels arrive unchanged
    for flag, want in ((["--tta", "none"], want_one[0]), ([], want_tta[0])):
        assert main(["predict", "--model", str(out), str(png), "--top", "1", "--json", *flag]) == 0
        (top,) = json.loads(capsys.readouterr().out)[0]["top"]
        assert top["prob"] == pytest.approx(float(want.max()), abs=1e-5)


def test_tta_model_is_the_evaluation_average() -> None:
    torch.manual_seed(0)
    net = create_model(TINY.model).eval()
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        for tta in ("none", "flip", "flip_translate"):
            torch.testing.assert_close(TTAModel(net, tta)(x), tta_logits(net, x, tta))
    with pytest.raises(ValueError, match="but got 'mirror'"):
        TTAModel(net, "mirror")  # type: ignore[arg-type]
