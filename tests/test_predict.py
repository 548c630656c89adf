"""predict: image files of any size and mode through a model folder; errors name the file."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from datagen import CLASSES, make_images
from PIL import Image

from cifar_search.errors import ConfigError, ModelFolderError
from cifar_search.train.checkpoint import save_model_folder
from cifar_search.train.config import ModelConfig, OptimConfig, TrainConfig
from cifar_search.train.loader import DeviceLoader
from cifar_search.train.models import create_model
from cifar_search.train.predict import load_image, load_predictor
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.trainer import train

CFG = TrainConfig(
    model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1)),
    optim=OptimConfig(lr=0.05, schedule="constant"),
    epochs=2,
    batch_size=100,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder of a small CNN that learned the generated classes."""
    x, y = make_images(1000, seed=0)
    loader = DeviceLoader(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                          torch.from_numpy(y.astype(np.int64)), CFG.batch_size, shuffle=True)
    torch.manual_seed(0)
    model = create_model(CFG.model)
    train(model, CFG, loader, None, resolve_runtime("cpu"), seed=0)
    folder = tmp_path_factory.mktemp("model")
    save_model_folder(folder, model, CFG, {"classes": list(CLASSES)})
    return folder


def odd_size_files(folder: Path, n: int = 20) -> tuple[list[Path], np.ndarray]:
    """Generated test images upscaled to odd sizes, as PNG and JPEG, in several modes."""
    images, labels = make_images(n, seed=5)
    sizes = [(45, 37), (100, 64), (33, 33), (17, 29), (320, 240)]
    paths = []
    for i, (image, size) in enumerate(zip(images, sizes * n, strict=False)):
        pil = Image.fromarray(image).resize(size, Image.Resampling.BICUBIC)
        if i % 4 == 0:
            path = folder / f"img{i}.jpg"
            pil.save(path, quality=95)
        elif i % 4 == 1:
            path = folder / f"img{i}.png"
            pil.convert("RGBA").save(path)  # opaque alpha channel
        elif i % 4 == 2:
            path = folder / f"img{i}.png"
            pil.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
        else:
            path = folder / f"img{i}.PNG"
            pil.save(path)
        paths.append(path)
    return paths, labels


def test_predicts_images_of_any_size_and_mode(model_dir: Path, tmp_path: Path) -> None:
    paths, labels = odd_size_files(tmp_path)
    predictor = load_predictor(model_dir)
    results = predictor.predict_images(paths, top=3)
    assert len(results) == len(paths)
    for ranked in results:
        assert len(ranked) == 3 and all(name in CLASSES for name, _ in ranked)
        probs = [p for _, p in ranked]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    top1 = np.array([CLASSES.index(r[0][0]) for r in results])
    originals, _ = make_images(len(paths), seed=5)
    on_pixels = predictor.predict_arrays(originals).argmax(1)
    assert (top1 == on_pixels).mean() >= 0.85  # resizing up and back keeps the prediction
    assert (top1 == labels).mean() >= 0.6  # and the model did learn the classes


def test_a_32px_png_predicts_exactly_like_the_pixels(model_dir: Path, tmp_path: Path) -> None:
    images, _ = make_images(4, seed=7)
    paths = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    predictor = load_predictor(model_dir)
    expected = predictor.predict_arrays(images)
    ranked = predictor.predict_images(paths, top=10)
    for row, result in zip(expected, ranked, strict=True):
        assert dict(result) == pytest.approx({CLASSES[j]: float(p) for j, p in enumerate(row)})
    with torch.no_grad():
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255
        direct = predictor.model(x).softmax(1).numpy()
    np.testing.assert_allclose(expected, direct, atol=1e-6)


def test_load_image_whole_image_bilinear_no_crop(tmp_path: Path) -> None:
    left_red = np.zeros((20, 200, 3), np.uint8)
    left_red[:, :100] = (255, 0, 0)
    left_red[:, 100:] = (0, 0, 255)
    Image.fromarray(left_red).save(tmp_path / "wide.png")
    small = load_image(tmp_path / "wide.png")
    assert small.shape == (32, 32, 3) and small.dtype == np.uint8
    assert (small[:, :15, 0] == 255).all() and (small[:, 17:, 2] == 255).all()  # both halves kept
    transparent = np.zeros((10, 10, 4), np.uint8)  # fully transparent black
    Image.fromarray(transparent, "RGBA").save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png") == 255).all()  # white, not the hidden black
    Image.fromarray(left_red[:, :, 0]).save(tmp_path / "grey.jpg")
    assert load_image(tmp_path / "grey.jpg").shape == (32, 32, 3)


def test_top_is_clamped_and_checked(model_dir: Path, tmp_path: Path) -> None:
    paths, _ = odd_size_files(tmp_path, n=2)
    predictor = load_predictor(model_dir)
    assert [len(r) for r in predictor.predict_images(paths, top=50)] == [10, 10]
    assert predictor.predict_images([], top=1) == []
    with pytest.raises(ConfigError, match="top must be >= 1"):
        predictor.predict_images(paths, top=0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.png", "missing.png: no such image file"),
        (lambda d: d, "not a file"),
        (lambda d: _write(d / "notes.png", b"this is not a picture"), "notes.png: not an image"),
        (lambda d: _write(d / "cut.png", _png_bytes()[:60]), "cut.png: "),
    ],
)
def test_bad_image_files_name_the_file(
    model_dir: Path, tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    bad = make(tmp_path)
    predictor = load_predictor(model_dir)
    with pytest.raises(ConfigError, match=message) as info:
        predictor.predict_images([bad])
    assert str(bad) in str(info.value)


def test_model_folder_problems_are_model_folder_errors(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="no such model folder"):
        load_predictor(tmp_path / "nowhere")
    old = tmp_path / "old"
    old.mkdir()
    for name in ("model.safetensors", "config.json", "metrics.json"):
        (old / name).write_bytes((model_dir / name).read_bytes())
    config = json.loads((old / "config.json").read_text())
    config["format_version"] = 99
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="format_version 99 is not supported"):
        load_predictor(old)
    (old / "config.json").write_text((model_dir / "config.json").read_text())
    (old / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFolderError, match=r"model\.safetensors"):
        load_predictor(old)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
