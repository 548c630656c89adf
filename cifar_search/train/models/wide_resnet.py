"""``wide_resnet``: WRN-d-k (Zagoruyko & Komodakis) with pre-activation basic blocks.

A 3x3 stem of 16 channels, then stages of ``width * 2**i`` channels (16k / 32k / 64k), strides
1, 2, 2, a final BN-act, global average pool and the head. WRN-28-10 is ``width=160,
depth=(4, 4, 4)`` (36.5M parameters); WRN-16-8 ``width=128, depth=(2, 2, 2)``.

Fields read:

* ``width``: channels of the first stage, ``16 * k``.
* ``depth``: blocks per stage (``(d - 4) / 6`` each for WRN-d), 1 to 4 stages.
* ``batch_norm`` / ``bn_momentum`` / ``activation``: the pre-activations (no BN: biased convs,
  and the last conv of every block starts at zero).
* ``block_dropout``: after every stage; ``dropout``, ``hidden``, ``head_scale``,
  ``num_classes``: the head.
"""

from __future__ import annotations

from torch import Tensor, nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.models.common import (
    Head,
    activation,
    check_stages,
    conv,
    norm,
    residual_stages,
)
from cifar_search.train.models.registry import register_model

STEM = 16  # channels of the stem conv, fixed in WRN


class PreActBlock(nn.Module):
    """``conv(act(bn(conv(act(bn(x)))))) + shortcut``; a projection reads the pre-activation."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(norm(cfg, c_in), activation(cfg))
        last = conv(cfg, c_out, c_out)
        if not cfg.batch_norm:
            nn.init.zeros_(last.weight)
        self.branch = nn.Sequential(
            conv(cfg, c_in, c_out, 3, stride), norm(cfg, c_out), activation(cfg), last
        )
        self.project = None
        if stride != 1 or c_in != c_out:
            self.project = conv(cfg, c_in, c_out, 1, stride)

    def forward(self, x: Tensor) -> Tensor:
        o = self.pre(x)
        out: Tensor = self.branch(o) + (x if self.project is None else self.project(o))
        return out


@register_model("wide_resnet", width=160, depth=(4, 4, 4))
def wide_resnet(cfg: ModelConfig) -> nn.Module:
    """Stem, pre-activation stages, BN-act, global average pool, head."""
    check_stages(cfg, "wide_resnet", 1, 4)
    stem: list[nn.Module] = [conv(cfg, 3, STEM)]
    stages, c_in = residual_stages(cfg, PreActBlock, STEM)
    final = [norm(cfg, c_in), activation(cfg), nn.AdaptiveAvgPool2d(1)]
    return nn.Sequential(*stem, *stages, *final, Head(cfg, c_in))
