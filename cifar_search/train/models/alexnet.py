"""``alexnet``: the RDFIA TME 5-6 network (conv5x5 / pool, three times, then two dense layers).

``conv5x5 32 / pool / conv5x5 64 / pool / conv5x5 64 / pool(ceil) / fc 1000 / fc 10``, which
sees 4x4x64 features at both input sizes 28 and 32 (28 -> 14 -> 7 -> 4 with the ceil pool).

Fields read:

* ``width``: channels of the first conv; the others follow the published 32/64/64 ratio.
* ``depth``: 5x5 convs per stage, 3 stages (published: ``(1, 1, 1)``).
* ``batch_norm`` / ``bn_momentum`` / ``activation``: after every conv (no BN: biased convs).
* ``block_dropout``: after every stage's pool.
* ``hidden``: units of fc4 (published 1000; 0: straight to the classifier).
* ``dropout``: before fc5 (the classifier); ``head_scale``, ``num_classes``.
* ``input_size``: 28 (RDFIA: random 28-crops, centre crop at eval) or anything up to 32.
"""

from __future__ import annotations

import math

from torch import nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.models.common import ConvBnAct, Head, check_stages, dropout, scaled
from cifar_search.train.models.registry import register_model

CHANNELS = (32, 64, 64)  # published, at width 32


class AlexStage(nn.Sequential):
    """``n`` conv5x5-bn-act, 2x2 max-pool (stride 2), dropout."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, n: int, ceil: bool) -> None:
        convs = [ConvBnAct(cfg, c_in if i == 0 else c_out, c_out, 5) for i in range(n)]
        pool = nn.MaxPool2d(2, stride=2, ceil_mode=ceil)
        super().__init__(*convs, pool, dropout(cfg.block_dropout))


@register_model("alexnet", width=32, depth=(1, 1, 1), hidden=1000, input_size=28, dropout=0.5)
def alexnet(cfg: ModelConfig) -> nn.Module:
    """Three conv5x5 stages (the last pool rounds up) and the fc4 / fc5 head."""
    check_stages(cfg, "alexnet", 3, 3)
    channels = scaled(cfg.width, CHANNELS[0], CHANNELS)
    layers: list[nn.Module] = []
    c_in, size = 3, cfg.input_size  # size: pixels
    for i, (n, c_out) in enumerate(zip(cfg.depth, channels, strict=True)):
        last = i == len(channels) - 1
        layers.append(AlexStage(cfg, c_in, c_out, n, ceil=last))
        size = math.ceil(size / 2) if last else size // 2
        c_in = c_out
    return nn.Sequential(*layers, Head(cfg, c_in * size * size))
