"""Misclassified test images, embedded in the page as base64 PNG."""

from __future__ import annotations

import base64
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from cifar_search.report._html import esc, note

MAX_IMAGES = 48  # misclassified test images shown per run


def _png(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def misclassified_grid(path: Path | None, classes: list[str]) -> str:
    """A grid of misclassified test images from ``misclassified.npz``, or a note.

    Args:
        path: The ``misclassified.npz`` (arrays ``images`` uint8 (N, 32, 32, 3), ``true``,
            ``pred``), or ``None``.
        classes: Class names, indexed by label.

    Returns:
        HTML: images embedded as base64 PNG, each with its true and predicted label.
    """
    if path is None or not path.is_file():
        return note("No misclassified.npz in the run folder: no misclassified images to show.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, true, pred = npz["images"], npz["true"], npz["pred"]
        n = min(len(images), len(true), len(pred))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
            zlib.error) as exc:  # a truncated file is a bad zip, or a member ends early
        return note(f"Unreadable {path} (truncated or corrupt?): {exc}")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or n == 0:
        shape = f"{images.dtype} {images.shape}"
        return note(f"{path}: expected uint8 images (N, 32, 32, 3), but got {shape}.")

    def name(label: object) -> str:
        try:
            k = int(label)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return str(label)
        return classes[k] if 0 <= k < len(classes) else str(k)

    figures = "".join(
        f'<figure><img alt="" src="data:image/png;base64,{_png(images[i])}">'
        f'<figcaption>{esc(name(true[i]))}<br><span class="wrong">{esc(name(pred[i]))}</span>'
        "</figcaption></figure>"
        for i in range(min(n, MAX_IMAGES))
    )
    return (
        f"<p>Misclassified test images ({min(n, MAX_IMAGES)} of {n}): true label, then "
        f'<span class="wrong">predicted</span>.</p><div class="grid">{figures}</div>'
    )
