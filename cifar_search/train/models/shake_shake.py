"""``shake_shake``: Shake-Shake regularisation (Gastaldi, 2017), "26 2x64d" at the defaults.

Two residual branches per block are mixed as ``alpha * b1 + (1 - alpha) * b2`` with a random
``alpha ~ U(0, 1)`` per image in the forward pass and an independent ``beta ~ U(0, 1)`` in the
backward pass ("Shake-Shake-Image"); at eval both are 0.5. A 3x3 stem of 16 channels, three
stages at strides 1, 2, 2, then act, global average pool and the head. 26 2x64d is
``width=64, depth=(4, 4, 4)``: 26 = 2 + 3 stages x 4 blocks x 2 convs.

Fields read:

* ``width``: channels of each branch in the first stage (the "64d"); stage ``i`` has
  ``width * 2**i``. Must be even (the projection shortcut concatenates two halves).
* ``depth``: blocks per stage, 1 to 4 stages.
* ``batch_norm`` / ``bn_momentum`` / ``activation``: in the branches (act-conv-bn-act-conv-bn)
  and the shortcut (no BN: biased convs).
* ``block_dropout``: after every stage; ``dropout``, ``hidden``, ``head_scale``,
  ``num_classes``: the head.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.models.common import (
    Head,
    activation,
    check,
    check_stages,
    conv,
    norm,
    residual_stages,
)
from cifar_search.train.models.registry import register_model

STEM = 16  # channels of the stem conv


class ShakeShake(torch.autograd.Function):
    """``alpha * a + (1 - alpha) * b`` forward; gradients ``beta`` and ``1 - beta`` backward."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
        ctx.save_for_backward(beta)
        return alpha * a + (1 - alpha) * b

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        (beta,) = ctx.saved_tensors
        return beta * grad, (1 - beta) * grad, None, None


def shake(a: Tensor, b: Tensor, training: bool) -> Tensor:
    """Mix two branches: random per image while training, the mean at eval."""
    if not training:
        return 0.5 * (a + b)
    shape = (a.shape[0], 1, 1, 1)
    alpha = torch.rand(shape, device=a.device, dtype=a.dtype)
    beta = torch.rand(shape, device=a.device, dtype=a.dtype)
    return ShakeShake.apply(a, b, alpha, beta)  # type: ignore[no-any-return]


class Branch(nn.Sequential):
    """act-conv3x3-bn-act-conv3x3-bn."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(
            activation(cfg), conv(cfg, c_in, c_out, 3, stride), norm(cfg, c_out),
            activation(cfg), conv(cfg, c_out, c_out), norm(cfg, c_out),
        )


class Shortcut(nn.Module):
    """act, then two strided 1x1 convs to half the channels each, the second shifted by one
    pixel, concatenated, bn (Gastaldi's projection shortcut)."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.act = activation(cfg)
        self.stride = stride
        self.conv1 = conv(cfg, c_in, c_out // 2, 1)
        self.conv2 = conv(cfg, c_in, c_out - c_out // 2, 1)
        self.bn = norm(cfg, c_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(x)
        s = self.stride
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        y = torch.cat([self.conv1(x[:, :, ::s, ::s]), self.conv2(shifted[:, :, ::s, ::s])], 1)
        out: Tensor = self.bn(y)
        return out


class ShakeBlock(nn.Module):
    """``shortcut(x) + shake(branch1(x), branch2(x))``."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.branch1 = Branch(cfg, c_in, c_out, stride)
        self.branch2 = Branch(cfg, c_in, c_out, stride)
        same = stride == 1 and c_in == c_out
        self.shortcut = nn.Identity() if same else Shortcut(cfg, c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        mixed = shake(self.branch1(x), self.branch2(x), self.training)
        out: Tensor = self.shortcut(x) + mixed
        return out


@register_model("shake_shake", width=64, depth=(4, 4, 4))
def shake_shake(cfg: ModelConfig) -> nn.Module:
    """Stem conv-bn, stages of shake blocks, act, global average pool, head."""
    check_stages(cfg, "shake_shake", 1, 4)
    check(cfg.width % 2 == 0, f"shake_shake width must be even, but got {cfg.width=}.")
    stem: list[nn.Module] = [conv(cfg, 3, STEM), norm(cfg, STEM)]
    stages, c_in = residual_stages(cfg, ShakeBlock, STEM)
    final = [activation(cfg), nn.AdaptiveAvgPool2d(1)]
    return nn.Sequential(*stem, *stages, *final, Head(cfg, c_in))
