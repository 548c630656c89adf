"""Choosing a config and its data from the command line, shared by ``train``, ``lr-find`` and
``retrain``: a preset, then ``--config`` JSON (a file or inline), then ``--set`` dotted fields;
the data through :mod:`cifar_search.train.recipe`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifar_search.cli._common import (
    MIN_TRAIN_SUBSET,
    add_data_args,
    add_device_args,
    non_negative_int,
    positive_int,
    train_subset_int,
)
from cifar_search.errors import ConfigError
from cifar_search.train.config import TrainConfig

if TYPE_CHECKING:  # torch is imported only when a command runs, to keep --help fast
    import torch

    from cifar_search.train.recipe import SplitData


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
        from cifar_search.train.presets import get_preset

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


def training_data(args: argparse.Namespace, device: torch.device) -> SplitData:
    """The fixed train/val split of ``--data`` (``--val-size``, ``--train-subset``) on
    ``device``; a subset that does not fit is refused before anything is copied."""
    from cifar_search.train.data import load_cifar10
    from cifar_search.train.recipe import DataSpec, split

    arrays = load_cifar10(args.data)
    spec = DataSpec(val_size=args.val_size, train_subset=args.train_subset)
    spec.check(arrays)
    return split(arrays, spec, device)


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
