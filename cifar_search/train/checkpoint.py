"""The model folder shared by ``train``, ``retrain`` and ``predict``.

A model folder holds three files:

* ``model.safetensors``: the weights (``safetensors.torch.save_model``: shared tensors are
  stored once; loading never unpickles anything);
* ``config.json``: ``TrainConfig.to_dict()`` plus ``format_version``, enough to rebuild the
  network with :func:`cifar_search.train.models.create_model`;
* ``metrics.json``: whatever the writer measured (nan and infinities are written as ``null``).

Example:
    >>> save_model_folder("runs/davidnet", model, cfg, {"val_acc": 0.93})  # doctest: +SKIP
    >>> model, cfg, metrics = load_model_folder("runs/davidnet", device="cuda")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from cifar_search.atomic import atomic_path, atomic_write_text
from cifar_search.errors import CifarSearchError, ModelFolderError
from cifar_search.train.config import TrainConfig

FORMAT_VERSION = 1  # bump when the folder layout or the config's meaning changes
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"


def save_model_folder(
    directory: str | Path, model: nn.Module, cfg: TrainConfig, metrics: dict[str, Any]
) -> Path:
    """Write ``model``, its config and ``metrics`` into ``directory`` (created if needed).

    Each file is written to a temporary name, fsync'd and renamed (:mod:`cifar_search.atomic`),
    so a crash or kill leaves the old file or the new one, never half of one.

    Args:
        directory: The model folder.
        model: The trained network (any device, any memory format).
        cfg: The config it was built and trained from.
        metrics: JSON-able results; non-finite floats become ``null``.

    Returns:
        The folder's path.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:
        save_model(model, str(tmp),
                   metadata={"format": "pt", "format_version": str(FORMAT_VERSION)})
    _write_json(folder / CONFIG, {"format_version": FORMAT_VERSION, **cfg.to_dict()})
    _write_json(folder / METRICS, metrics)
    return folder


def read_config(directory: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of a model folder, without loading weights."""
    folder = Path(directory)
    data = _read_json(folder, CONFIG)
    if not isinstance(data, dict):
        raise ModelFolderError(f"{folder / CONFIG}: expected a JSON object, got {data!r:.80}.")
    version = data.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise ModelFolderError(
            f"{folder}: format_version {version!r} is not supported (this version reads "
            f"{FORMAT_VERSION}); retrain or export with a matching cifar-search."
        )
    try:
        return TrainConfig.from_dict(data).validate()
    except CifarSearchError as exc:
        raise ModelFolderError(f"{folder / CONFIG}: {exc}") from exc


def load_model_folder(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the network of a model folder and load its weights (safetensors only).

    Args:
        directory: A folder written by :func:`save_model_folder`.
        device: Where the weights go.

    Returns:
        ``(model in eval mode, config, metrics)``; metrics are ``{}`` if the file is absent.

    Raises:
        ModelFolderError: Missing folder or files, unsupported ``format_version``, a config that
            does not parse, or weights that do not fit the architecture the config describes.
    """
    from cifar_search.train.models import create_model  # here: the registry imports every family

    folder = Path(directory)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such model folder.")
    cfg = read_config(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelFolderError(f"{folder}: {WEIGHTS} is missing.")
    model = create_model(cfg.model)
    try:
        load_model(model, str(weights), strict=True, device=str(device))
    except SafetensorError as exc:  # a truncated or overwritten file
        raise ModelFolderError(
            f"{weights}: truncated or corrupt, not a readable safetensors file ({_line(exc)}); "
            "write the model folder again (train / retrain)."
        ) from exc
    except Exception as exc:  # RuntimeError for missing or mis-shaped keys
        raise ModelFolderError(
            f"{weights}: weights do not load into {cfg.model.family}: {_line(exc)}"
        ) from exc
    model.to(device).eval()
    metrics = _read_json(folder, METRICS) if (folder / METRICS).is_file() else {}
    return model, cfg, metrics if isinstance(metrics, dict) else {"metrics": metrics}


def _line(exc: BaseException) -> str:
    """An exception's message on one line, at most 300 characters."""
    return " ".join(line.strip() for line in str(exc).strip().splitlines())[:300]


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise ModelFolderError(f"{folder}: {name} is missing.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(
            f"{path}: truncated or corrupt, not valid JSON ({_line(exc)})."
        ) from exc


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """JSON-safe copy: nan and infinities become None, tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
