"""Classify image files with a model folder (``cifar-search train`` / ``retrain`` output).

Images of any size and mode (PNG, JPEG, anything Pillow reads) are turned into what the model
was trained on, the same way every time:

1. EXIF orientation applied; transparency composited onto white; converted to RGB;
2. the **whole image** resized to 32 x 32 pixels, **bilinear with antialias** (Pillow's
   ``BILINEAR`` filter, whose support widens when shrinking), no crop: the aspect ratio is not
   kept, so a wide photo is squeezed rather than cut;
3. scaled to float [0, 1]; the model normalises (and centre-crops) inside itself.

The logits are computed with the config's test-time augmentation (``tta``) by default, like the
headline test accuracy and ``model_tta.onnx``; ``tta="none"`` (``predict --tta none``) uses one
view per image, like the single-view accuracy and ``model.onnx``. A softmax turns them into
probabilities.

Example:
    >>> predictor = load_predictor("runs/cifar/trial-12")  # doctest: +SKIP
    >>> predictor.predict_images(["cat.jpg"], top=2)         # doctest: +SKIP
    [[('cat', 0.91), ('dog', 0.05)]]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from cifar_search.errors import ConfigError, ModelFolderError
from cifar_search.train.checkpoint import load_model_folder
from cifar_search.train.config import TTA, TrainConfig
from cifar_search.train.data import CLASSES
from cifar_search.train.evaluation import tta_logits
from cifar_search.train.runtime import resolve_device

logger = logging.getLogger(__name__)

IMAGE_SIZE = 32  # pixels: every image is resized to IMAGE_SIZE x IMAGE_SIZE
BATCH = 256  # images per forward pass
PredictTTA = Literal["model", "none"]  # the model's own test-time augmentation, or one view


@dataclass
class Predictor:
    """A loaded model folder, ready to classify images."""

    model: nn.Module  # eval mode, on ``device``
    config: TrainConfig
    classes: tuple[str, ...]
    device: torch.device
    folder: Path
    tta: PredictTTA = "model"  # "model": the config's test-time augmentation; "none": one view

    @property
    def views(self) -> TTA:
        """The test-time augmentation whose views are averaged per image."""
        return self.config.tta if self.tta == "model" else "none"

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, classes)`` of uint8 RGB images ``(N, 32, 32, 3)``."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise ConfigError(f"images must be uint8 (N, 32, 32, 3), got {images.dtype} "
                              f"{images.shape}.")
        out = []
        with torch.no_grad():
            for start in range(0, len(images), BATCH):
                chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + BATCH]))
                x = chunk.to(self.device).permute(0, 3, 1, 2).float() / 255
                logits = tta_logits(self.model, x, self.views)
                out.append(logits.float().softmax(1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict_images(
        self, paths: Sequence[str | Path], top: int = 3
    ) -> list[list[tuple[str, float]]]:
        """The ``top`` most probable classes of each image file, most probable first.

        Raises:
            ConfigError: ``top`` < 1, or a path that is missing or not an image (named).
        """
        if top < 1:
            raise ConfigError(f"top must be >= 1, but got {top=}.")
        if not paths:
            return []
        probs = self.predict_arrays(np.stack([load_image(p) for p in paths]))
        k = min(top, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(row[j])) for j in idx]
                for row, idx in zip(probs, order, strict=True)]


def load_predictor(
    model_dir: str | Path, device: str = "cpu", tta: PredictTTA = "model"
) -> Predictor:
    """Rebuild the network of a model folder and load its weights (safetensors, no pickle).

    Args:
        model_dir: A folder holding ``model.safetensors``, ``config.json`` (and ``metrics.json``).
        device: ``cpu`` (default), ``cuda``, ``cuda:i`` or ``auto``.
        tta: ``model``: the config's test-time augmentation; ``none``: one view per image.

    Raises:
        ModelFolderError: missing folder or files, another ``format_version``, weights that do
            not fit, or a model whose output is not one logit per class name.
        ConfigError: ``tta`` is neither ``model`` nor ``none``.
    """
    if tta not in ("model", "none"):
        raise ConfigError(f"tta must be model or none, but got {tta!r}.")
    folder = Path(model_dir)
    model, cfg, metrics = load_model_folder(folder, device=resolve_device(device))
    classes = metrics.get("classes")
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        classes = list(CLASSES)
    if len(classes) != cfg.model.num_classes:
        raise ModelFolderError(f"{folder}: {cfg.model.num_classes} outputs but {len(classes)} "
                               "class names in metrics.json.")
    return Predictor(model.eval(), cfg, tuple(classes), next(model.parameters()).device, folder,
                     tta)


def load_image(path: str | Path) -> np.ndarray:
    """One image file as uint8 RGB ``(32, 32, 3)`` (see the module docstring for how).

    Raises:
        ConfigError: the file is missing, a folder, or not an image Pillow can decode.
    """
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"{file}: no such image file.")
    if not file.is_file():
        raise ConfigError(f"{file}: not a file (give image files, e.g. PNG or JPEG).")
    try:
        with Image.open(file) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            image = _to_rgb(image)
            small = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"{file}: not an image this can read ({_reason(exc)}).") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise ConfigError(f"{file}: unreadable image ({_reason(exc)}).") from None
    return np.asarray(small, dtype=np.uint8).copy()


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB; transparent pixels become white instead of whatever colour they hid."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
