"""``cifar-search train``: train one preset (or config file) and write a model folder.

The output folder is a model folder (:mod:`cifar_search.checkpoint`): ``model.safetensors``,
``config.json`` and ``metrics.json`` (final and per-epoch metrics, config, seed, device, library
versions, wall time, data source and sizes). The test set is never touched here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifar_search.cli._common import (
    MAX_SEED,
    MIN_TRAIN_SUBSET,
    add_data_args,
    add_device_args,
    non_negative_int,
    positive_int,
    seed_int,
    train_subset_int,
)
from cifar_search.config import TrainConfig
from cifar_search.errors import ConfigError
from cifar_search.names import check_out_dir, user_path

if TYPE_CHECKING:  # torch is imported only when a command runs, to keep --help fast
    import torch

    from cifar_search.loader import DeviceLoader
    from cifar_search.runtime import Runtime

logger = logging.getLogger(__name__)

VAL_SIZE = 5000  # validation images held out of the 50,000 training images by default

EPILOG = """\
--epochs replaces the preset's epoch budget, and the learning-rate schedule spans the new one.
--config takes a JSON object in TrainConfig.to_dict() form, whole or partial, as a file or
inline: its keys replace the preset's (or the defaults without --preset). --set KEY=VALUE
(repeatable) then sets one dotted field: --set optim.lr=0.1 --set augment.cutout=8.

examples:
  cifar-search train --preset davidnet --out runs/davidnet
  cifar-search train --preset rdfia-alexnet --train-subset 10000 --epochs 5 --out runs/rdfia
  cifar-search train --config my.json --device cpu --out runs/mine
  cifar-search train --preset fast94 --config '{"lookahead": 0}' --set optim.lr=1.2
"""


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train one preset or config; writes a model folder",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--batch-size", type=positive_int, help="images per step (overrides)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help=f"seed of init, shuffling and augmentation, in [0, {MAX_SEED}]")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """Options that choose the config and the data (shared with ``lr-find``)."""
    p.add_argument("--preset", metavar="NAME", help="a named preset: cifar-search presets")
    p.add_argument("--config", metavar="FILE.json|JSON",
                   help="TrainConfig JSON over the preset: a file, or inline '{...}'")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="set one dotted TrainConfig field, e.g. optim.lr=0.1 (repeatable)")
    p.add_argument("--epochs", type=positive_int, help="epoch budget (overrides)")
    p.add_argument("--train-subset", type=train_subset_int, metavar="N",
                   help=f"stratified training images, >= {MIN_TRAIN_SUBSET} and at most the "
                   "train split (default: all of it)")
    p.add_argument("--val-size", type=non_negative_int, metavar="N",
                   help="validation images held out of the training set (default: 5000, or a "
                   "tenth of a smaller set; 0: none, train on everything)")
    add_data_args(p)
    add_device_args(p)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cifar_search.checkpoint import save_model_folder
    from cifar_search.models import count_params, create_model
    from cifar_search.runtime import configure_cpu_threads, resolve_runtime, seed_everything
    from cifar_search.trainer import EpochMetrics, train

    start = time.perf_counter()
    cfg, name = load_config(args.preset, args.config, args.epochs, args.batch_size, args.sets)
    check_out_dir("--out", args.out)  # before training, not after it
    configure_cpu_threads()
    runtime = resolve_runtime(args.device, args.precision, compile=args.compile)
    data = load_training_data(args.data, args.val_size, args.train_subset, runtime.device)
    train_loader, val_loader = build_loaders(data, cfg, runtime, args.seed)
    seed_everything(args.seed)
    model = create_model(cfg.model)
    bar = tqdm(total=cfg.epochs, unit="epoch", file=sys.stderr, disable=args.no_progress,
               desc=name, dynamic_ncols=True)

    def on_epoch_end(epoch: int, m: EpochMetrics) -> None:
        bar.update(1)
        bar.set_postfix_str(
            f"train {100 * m.train_acc:.1f}% val {100 * m.val_acc:.1f}% loss {m.train_loss:.3f}"
        )

    try:
        result = train(model, cfg, train_loader, val_loader, runtime, seed=args.seed,
                       on_epoch_end=on_epoch_end)
    finally:
        bar.close()
    metrics = {
        "preset": name,
        "final": {k: v for k, v in result.as_dict().items() if k != "history"},
        "epochs": [m.as_dict() for m in result.history],
        "config": cfg.to_dict(),
        "seed": args.seed,
        "n_params": count_params(model),
        "data": data.describe(),
        "wall_seconds": time.perf_counter() - start,
        **_environment(runtime),
    }
    with user_path("--out", args.out):
        out = save_model_folder(args.out, model, cfg, metrics)
    print(f"{name}: val acc {100 * result.final_val_acc:.2f}% (epoch {result.final_epoch}), "
          f"best {100 * result.best_val_acc:.2f}% at epoch {result.best_epoch}, "
          f"{metrics['wall_seconds']:.1f} s; model folder {out}")
    return 0


def load_config(
    preset: str | None, config_file: str | None, epochs: int | None, batch_size: int | None,
    sets: list[str] | None = None,
) -> tuple[TrainConfig, str]:
    """The config to train and a name for it: preset, then --config keys, then --set, then
    the overrides."""
    if preset is None and config_file is None:
        raise ConfigError("give --preset NAME (see `cifar-search presets`) or --config FILE.json.")
    base = TrainConfig().to_dict()
    if preset is not None:
        from cifar_search.presets import get_preset

        base = get_preset(preset).config.to_dict()
    if config_file is not None:
        base = _merge(base, _read_json(config_file))
    cfg = apply_sets(TrainConfig.from_dict(base), sets or [])
    if epochs is not None:
        cfg = cfg.replace(epochs=epochs)
    if batch_size is not None:
        cfg = cfg.replace(batch_size=batch_size)
    inline = config_file is None or config_file.lstrip().startswith("{")
    return cfg.validate(), preset or ("config" if inline else Path(str(config_file)).stem)


@dataclass(frozen=True)
class TrainingData:
    """Device-resident training and validation tensors (uint8 NCHW, int64 labels)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    source: str

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "train_size": len(self.train_y),
            "val_size": 0 if self.val_y is None else len(self.val_y),
            "test_set_used": False,
        }


def load_training_data(
    path: str | None, val_size: int | None, train_subset: int | None, device: torch.device
) -> TrainingData:
    """The fixed train/val split (seed 0) of CIFAR-10's training set, optionally subsampled.

    ``val_size`` None: :data:`VAL_SIZE`, or a tenth of the training set when that is smaller.
    """
    import numpy as np
    import torch

    from cifar_search.data import (
        check_train_subset,
        load_cifar10,
        stratified_subset,
        train_val_split,
    )
    from cifar_search.loader import device_arrays

    arrays = load_cifar10(path)
    if val_size is None:
        val_size = min(VAL_SIZE, len(arrays.train_y) // 10)
    split = train_val_split(arrays.train_y, val_size=val_size, seed=0)
    train_idx = split.train
    check_train_subset(train_subset, len(train_idx), arrays.source)
    if train_subset is not None and train_subset < len(train_idx):
        train_idx = stratified_subset(train_idx, arrays.train_y, train_subset, seed=0)
    x, y = device_arrays(arrays.train_x, arrays.train_y, device)
    t = torch.as_tensor(np.asarray(train_idx), device=device)
    if val_size == 0:
        return TrainingData(x[t], y[t], None, None, arrays.source)
    v = torch.as_tensor(np.asarray(split.val), device=device)
    return TrainingData(x[t], y[t], x[v], y[v], arrays.source)


def build_loaders(
    data: TrainingData, cfg: TrainConfig, runtime: Runtime, seed: int
) -> tuple[DeviceLoader, DeviceLoader | None]:
    """Shuffled, augmented training loader and plain validation loader (or None)."""
    from cifar_search.augment import BatchAugment
    from cifar_search.evaluation import EVAL_BATCH
    from cifar_search.loader import DeviceLoader

    n = len(data.train_y)
    augment = BatchAugment(cfg.augment, input_size=cfg.model.input_size)
    train_loader = DeviceLoader(
        data.train_x, data.train_y, cfg.batch_size, augment=augment, shuffle=True,
        drop_last=n > cfg.batch_size, seed=seed, memory_format=runtime.memory_format,
    )
    if data.val_x is None or data.val_y is None:
        return train_loader, None
    val_loader = DeviceLoader(data.val_x, data.val_y, EVAL_BATCH,
                              memory_format=runtime.memory_format)
    return train_loader, val_loader


def _environment(runtime: Runtime) -> dict[str, Any]:
    from cifar_search.runtime import versions

    return {"device": runtime.describe(), "versions": versions()}


def apply_sets(cfg: TrainConfig, sets: list[str]) -> TrainConfig:
    """``cfg`` with each ``dotted.key=value`` set (the value read as JSON where it parses:
    numbers, true/false, lists; else as a string). An unknown key or a wrong type is a
    :class:`ConfigError` naming it."""
    tree = cfg.to_dict()
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set wants KEY=VALUE (e.g. optim.lr=0.1), but got {item!r}.")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.strip().split(".")
        node = tree
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                sections = ", ".join(k for k, v in tree.items() if isinstance(v, dict))
                raise ConfigError(f"--set {item}: {key!r} is not a TrainConfig field "
                                  f"(sections: {sections}).")
            node = child
        if leaf not in node:
            raise ConfigError(f"--set {item}: unknown field {leaf!r} in "
                              f"{'.'.join(parents) or 'TrainConfig'} (known: {', '.join(node)}).")
        node[leaf] = value
    return TrainConfig.from_dict(tree).validate()


def _read_json(path: str) -> dict[str, Any]:
    if path.lstrip().startswith("{"):  # inline JSON
        try:
            data = json.loads(path)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config: inline JSON does not parse ({exc}).") from exc
        return dict(data)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror or exc}.") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object, got {type(data).__name__}.")
    return data


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s keys replaced, sections merged recursively."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
