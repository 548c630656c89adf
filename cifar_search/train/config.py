"""The trial configuration: frozen, typed, serialisable.

One :class:`TrainConfig` fully describes a training run (model, augmentation, optimisation,
budget). The search space turns an Optuna trial into one, presets are hand-written ones, and the
same dict form is stored with every trial and inside every checkpoint, so a run can always be
rebuilt exactly (``TrainConfig.from_dict(cfg.to_dict()) == cfg``).

Every number has its unit in the field comment.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

from cifar_search.errors import ConfigError

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.482158, 0.446531)  # train set, [0, 1] scale
CIFAR10_STD: tuple[float, float, float] = (0.247032, 0.243485, 0.261588)

Activation = Literal["relu", "gelu", "celu", "silu"]
Block = Literal["basic", "bottleneck"]
Flip = Literal["none", "random", "alternating"]
AutoAugmentPolicy = Literal["none", "autoaugment", "trivialaugment"]
OptimizerName = Literal["sgd", "adam", "adamw"]
ScheduleName = Literal["constant", "multistep", "exponential", "cosine", "onecycle", "cyclic"]
Anneal = Literal["cos", "linear"]
TTA = Literal["none", "flip", "flip_translate"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Each family reads the fields that apply to it (see ``models/``)."""

    family: str = "resnet9"  # a name of the model registry: ``cifar-search summary --list``
    width: int = 64  # channels of the first stage; later stages follow the family's rule
    depth: tuple[int, ...] = (1, 1, 1)  # per stage: convs (plain, vgg) or residual blocks
    block: Block = "basic"  # residual block of the ``resnet`` family
    batch_norm: bool = True
    activation: Activation = "relu"
    dropout: float = 0.0  # probability, before the classifier
    block_dropout: float = 0.0  # probability, after every stage / residual layer
    hidden: int = 0  # units of a hidden dense layer before the classifier (0: none)
    head_scale: float = 1.0  # logits are multiplied by this (DavidNet and airbench: 0.125)
    bn_momentum: float = 0.1  # PyTorch convention: weight of the new batch statistics
    input_size: int = 32  # pixels; < 32 means random crops for training, centre crop at eval
    whiten_bias_epochs: int = 0  # airbench: epochs the whitening bias trains, then frozen (0: all)
    num_classes: int = 10
    mean: tuple[float, float, float] = CIFAR10_MEAN  # normalisation inside the model, [0, 1]
    std: tuple[float, float, float] = CIFAR10_STD


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; all of it runs on whole batches on the device."""

    crop_padding: int = 4  # pixels of padding around the random crop (0 with input 32: off)
    padding_mode: Literal["reflect", "zeros"] = "reflect"
    resized_crop_scale: float = 1.0  # smallest area fraction of RandomResizedCrop (1.0: off)
    flip: Flip = "random"  # horizontal flip; "alternating" flips each image every other epoch
    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    auto_augment: AutoAugmentPolicy = "none"  # CIFAR-10 AutoAugment policy or TrivialAugment
    blur: float = 0.0  # probability per image of a 3x3 Gaussian blur
    cutout: int = 0  # side of the zeroed square, pixels (0: off)
    random_erasing: float = 0.0  # probability per image of random erasing
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixing (0: off)
    cutmix_alpha: float = 0.0  # Beta(alpha, alpha) box mixing (0: off)
    mix_prob: float = 1.0  # probability per batch that mixup / cutmix is applied


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule. Schedules span the full epoch budget."""

    optimizer: OptimizerName = "sgd"
    lr: float = 0.1  # peak learning rate as the optimiser receives it, at ``batch_size``
    momentum: float = 0.9  # SGD momentum; Adam beta1
    nesterov: bool = False
    beta2: float = 0.999  # Adam / AdamW
    weight_decay: float = 5e-4  # PyTorch convention (coupled for SGD/Adam, decoupled AdamW)
    decay_norm_and_bias: bool = True  # False: no weight decay on norm layers and biases
    schedule: ScheduleName = "onecycle"
    warmup_epochs: float = 0.0  # linear warm-up from 0, epochs (inside the budget)
    milestones: tuple[float, ...] = (0.5, 0.75)  # multistep: fractions of the epoch budget
    gamma: float = 0.1  # multistep: factor at each milestone; exponential: factor per epoch
    pct_start: float = 0.25  # onecycle / cyclic: fraction of the budget spent rising to the peak
    div_factor: float = 25.0  # onecycle: start at lr / div_factor
    final_div_factor: float = 1e4  # onecycle: end at lr / (div_factor * final_div_factor)
    anneal: Anneal = "cos"  # onecycle: shape of both phases
    label_smoothing: float = 0.0  # fraction of the target mass spread over all classes
    grad_clip: float = 0.0  # max global gradient norm (0: off)
    norm_bias_lr_scale: float = 1.0  # lr multiplier of norm-layer biases (airbench: 64)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run, apart from the seed and the device."""

    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 20  # the full budget; the schedule spans it even when a trial is cut short
    batch_size: int = 512  # images per step
    ema_decay: float = 0.0  # per-step decay of an exponential moving average of weights (0: off)
    lookahead: int = 0  # steps between lookahead syncs (airbench: 5; 0: off), see trainer
    lookahead_decay: float = 0.95**5  # the syncs' decay at the end; it ramps up as progress^3
    tta: TTA = "none"  # test-time augmentation at evaluation
    early_stopping: int = 0  # patience in epochs on validation loss, best weights kept (0: off)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return _to_plain(dataclasses.asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys and wrong types raise :class:`ConfigError`."""
        return _build(cls, data, "")

    def replace(self, **sections: Any) -> TrainConfig:
        """Copy with top-level fields or whole sections replaced."""
        return dataclasses.replace(self, **sections)

    def validate(self) -> TrainConfig:
        """Range checks that types alone cannot express; returns ``self``."""
        _check(self.epochs >= 1, f"epochs must be >= 1, but got {self.epochs=}.")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, but got {self.batch_size=}.")
        _check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay=}.")
        _check(self.lookahead >= 0, f"lookahead must be >= 0 steps, got {self.lookahead=}.")
        _check(0 <= self.lookahead_decay < 1,
               f"lookahead_decay must be in [0, 1), got {self.lookahead_decay=}.")
        m, a, o = self.model, self.augment, self.optim
        _check(m.width >= 1, f"model.width must be >= 1, but got {m.width=}.")
        _check(all(d >= 0 for d in m.depth), f"model.depth must be >= 0, but got {m.depth=}.")
        for name in ("dropout", "block_dropout"):
            p = getattr(m, name)
            _check(0 <= p < 1, f"model.{name} must be in [0, 1), but got {p}.")
        _check(m.whiten_bias_epochs >= 0,
               f"model.whiten_bias_epochs must be >= 0, got {m.whiten_bias_epochs}.")
        _check(8 <= m.input_size <= 32,
               f"model.input_size must be in [8, 32], got {m.input_size}.")
        _check(a.crop_padding >= 0, f"augment.crop_padding must be >= 0, got {a.crop_padding}.")
        _check(0 < a.resized_crop_scale <= 1, f"augment.resized_crop_scale in (0, 1]: {a}.")
        for name in ("blur", "random_erasing", "mix_prob"):
            p = getattr(a, name)
            _check(0 <= p <= 1, f"augment.{name} must be in [0, 1], but got {p}.")
        _check(o.lr > 0, f"optim.lr must be > 0, but got {o.lr=}.")
        _check(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}.")
        _check(o.norm_bias_lr_scale > 0,
               f"optim.norm_bias_lr_scale must be > 0, got {o.norm_bias_lr_scale}.")
        _check(0 <= o.label_smoothing < 1,
               f"optim.label_smoothing must be in [0, 1), got {o.label_smoothing}.")
        _check(0 < o.pct_start < 1, f"optim.pct_start must be in (0, 1), got {o.pct_start}.")
        _check(
            all(0 < x < 1 for x in o.milestones),
            f"optim.milestones are fractions in (0, 1), but got {o.milestones}.",
        )
        return self


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


T = TypeVar("T")


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where.rstrip('.') or 'config'} must be a table, but got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(
            f"unknown key {where}{unknown[0]!s} (known: {', '.join(sorted(fields))})."
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a type hint, converting lists to tuples; name the key if wrong."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where + ".")  # type: ignore[arg-type]
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{where} must be one of {list(get_args(hint))}, got {value!r}.")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, but got {value!r}.")
        args = get_args(hint)
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, v, where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} items, but got {value!r}.")
        return tuple(_coerce(t, v, where) for t, v in zip(args, value, strict=True))
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, but got {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where} must be an integer, but got {value!r}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, but got {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, but got {value!r}.")
        return value
    return value
