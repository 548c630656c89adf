"""``vgg``: VGG-style stages of 3x3 convs with max-pools, global average pool and a linear head.

Fields read:

* ``width``: channels of the first stage; stage ``i`` has ``width * min(2**i, 8)``
  (VGG: 64/128/256/512/512).
* ``depth``: 3x3 convs per stage, 1 to 5 stages, each followed by a 2x2 max-pool
  (VGG-11 ``(1, 1, 2, 2, 2)``, VGG-16 ``(2, 2, 3, 3, 3)``, VGG-19 ``(2, 2, 4, 4, 4)``).
* ``batch_norm`` / ``bn_momentum`` / ``activation``: after every conv (no BN: biased convs).
* ``block_dropout``: after every stage's pool.
* ``hidden``, ``dropout``, ``head_scale``, ``num_classes``: the head after the global pool.
"""

from __future__ import annotations

from torch import nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.models.common import ConvBnAct, Head, check, check_stages, dropout
from cifar_search.train.models.registry import register_model


class VGGStage(nn.Sequential):
    """``n`` conv-bn-act, 2x2 max-pool, dropout."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, n: int) -> None:
        convs = [ConvBnAct(cfg, c_in if i == 0 else c_out, c_out) for i in range(n)]
        super().__init__(*convs, nn.MaxPool2d(2), dropout(cfg.block_dropout))


@register_model("vgg", width=64, depth=(1, 1, 2, 2, 2))
def vgg(cfg: ModelConfig) -> nn.Module:
    """VGG stages, global average pool, head."""
    check_stages(cfg, "vgg", 1, 5)
    check(cfg.input_size >= 2 ** len(cfg.depth),
          f"vgg: {len(cfg.depth)} pools need input_size >= {2 ** len(cfg.depth)}, "
          f"but got {cfg.input_size=}.")
    layers: list[nn.Module] = []
    c_in = 3
    for i, n in enumerate(cfg.depth):
        c_out = cfg.width * min(2**i, 8)
        layers.append(VGGStage(cfg, c_in, c_out, n))
        c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), Head(cfg, c_in))
