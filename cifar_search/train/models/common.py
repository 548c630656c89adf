"""Pieces every family shares: the input layer, conv-bn-act, the classifier head.

:class:`Preprocess` puts the normalisation (and the centre crop of a model trained on smaller
crops) inside the model, so every model takes float images in [0, 1], ``(B, 3, 32, 32)``, and an
export carries its own preprocessing. The helpers honour ``ModelConfig.batch_norm`` (off: the
conv gets a bias instead), ``activation`` and ``bn_momentum`` so the families do not branch on
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from cifar_search.errors import ConfigError
from cifar_search.train.config import ModelConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "celu": nn.CELU,
    "silu": nn.SiLU,
}


def check(ok: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def check_stages(cfg: ModelConfig, family: str, low: int, high: int, min_depth: int = 1) -> None:
    """``cfg.depth`` must have ``low..high`` stages of at least ``min_depth`` each."""
    n = len(cfg.depth)
    stages = f"{low}" if low == high else f"{low} to {high}"
    check(low <= n <= high, f"{family} depth must have {stages} stages, but got {cfg.depth=}.")
    check(
        all(d >= min_depth for d in cfg.depth),
        f"{family} depth must be >= {min_depth} in every stage, but got {cfg.depth=}.",
    )


def scaled(width: int, base: int, channels: Sequence[int]) -> list[int]:
    """``channels`` (published at ``width == base``) scaled by ``width / base``, at least 1."""
    return [max(1, round(c * width / base)) for c in channels]


def activation(cfg: ModelConfig) -> nn.Module:
    """A fresh activation module of ``cfg.activation``."""
    if cfg.activation not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {cfg.activation!r} (known: {', '.join(ACTIVATIONS)})."
        )
    return ACTIVATIONS[cfg.activation]()


def norm(cfg: ModelConfig, channels: int) -> nn.Module:
    """``BatchNorm2d`` with ``cfg.bn_momentum`` (PyTorch convention), or identity when off."""
    if not cfg.batch_norm:
        return nn.Identity()
    return nn.BatchNorm2d(channels, momentum=cfg.bn_momentum)


def conv(
    cfg: ModelConfig, c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
    padding: int | None = None,
) -> nn.Conv2d:
    """A conv with "same"-style padding; biased only when batch norm is off."""
    pad = kernel // 2 if padding is None else padding
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=not cfg.batch_norm)


Block = Callable[[ModelConfig, int, int, int], nn.Module]  # (cfg, c_in, c_out, stride)


def residual_stages(cfg: ModelConfig, block: Block, c_in: int) -> tuple[list[nn.Module], int]:
    """Stage ``i`` holds ``cfg.depth[i]`` blocks of ``cfg.width * 2**i`` channels, the first
    block of every stage after the first at stride 2, then ``cfg.block_dropout``. Returns the
    stages and the channels they end with."""
    stages: list[nn.Module] = []
    for i, n in enumerate(cfg.depth):
        c_out = cfg.width * 2**i
        blocks = [block(cfg, c_in if j == 0 else c_out, c_out, 2 if i and not j else 1)
                  for j in range(n)]
        stages.append(nn.Sequential(*blocks, dropout(cfg.block_dropout)))
        c_in = c_out
    return stages, c_in


def dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or identity at ``p == 0`` (keeps summaries short)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class ConvBnAct(nn.Sequential):
    """conv (k x k) -> batch norm -> activation."""

    def __init__(
        self, cfg: ModelConfig, c_in: int, c_out: int, kernel: int = 3, stride: int = 1
    ) -> None:
        super().__init__(
            conv(cfg, c_in, c_out, kernel, stride), norm(cfg, c_out), activation(cfg)
        )


class Scale(nn.Module):
    """Multiply by a constant (DavidNet's and airbench's logit scale)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Head(nn.Sequential):
    """flatten -> [linear ``hidden`` -> activation] -> dropout -> linear to classes -> scale.

    Reads ``hidden`` (0: no hidden layer), ``dropout`` (right before the classifier),
    ``num_classes`` and ``head_scale`` (1.0: no scaling layer).
    """

    def __init__(self, cfg: ModelConfig, features: int, bias: bool = True) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        if cfg.hidden > 0:
            layers += [nn.Linear(features, cfg.hidden), activation(cfg)]
            features = cfg.hidden
        layers += [dropout(cfg.dropout), nn.Linear(features, cfg.num_classes, bias=bias)]
        if cfg.head_scale != 1.0:
            layers.append(Scale(cfg.head_scale))
        super().__init__(*layers)


class Preprocess(nn.Module):
    """Centre crop to ``input_size`` (only inputs larger than it), then per-channel normalisation.

    Input: float images in [0, 1], ``(B, 3, H, W)``. The mean and std are buffers, so they are
    saved with the weights and go into every export.
    """

    mean: Tensor  # (1, 3, 1, 1), [0, 1] scale
    std: Tensor

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], input_size: int = 32
    ) -> None:
        super().__init__()
        check(len(mean) == 3 and len(std) == 3, f"mean and std need 3 channels: {mean=}, {std=}.")
        check(all(s > 0 for s in std), f"std must be > 0 in every channel, but got {std=}.")
        self.input_size = input_size  # pixels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Preprocess:
        return cls(cfg.mean, cfg.std, cfg.input_size)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        s = self.input_size
        if h > s or w > s:
            top, left = max(0, (h - s) // 2), max(0, (w - s) // 2)
            x = x[..., top : top + s, left : left + s]
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}"


class Classifier(nn.Module):
    """``net(preprocess(x))``: float [0, 1] images ``(B, 3, 32, 32)`` -> logits."""

    def __init__(self, preprocess: Preprocess, net: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.net(self.preprocess(x))
        return logits

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the net, if it has one, before each 1-based training epoch (the
        trainer calls it; airbench freezes its whitening bias that way)."""
        hook = getattr(self.net, "set_epoch", None)
        if callable(hook):
            hook(epoch)


class DataInitClassifier(Classifier):
    """A :class:`Classifier` whose net initialises a layer from data (airbench whitening)."""

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Initialise from un-augmented training images, float [0, 1], ``(N, 3, 32, 32)``."""
        init = cast(Callable[[Tensor], None], self.net.init_from_data)
        init(self.preprocess(images.float()))
