"""``resnet``: the CIFAR ResNet of Kuang Liu's pytorch-cifar (3x3 stem, no max-pool).

ResNet-18 ``depth=(2, 2, 2, 2)`` 11,173,962 params; ResNet-34 ``(3, 4, 6, 3)`` 21,282,122;
ResNet-50 ``(3, 4, 6, 3)`` with ``block="bottleneck"`` 23,520,842 (all at width 64).

Fields read:

* ``width``: channels of the stem and the first stage; stage ``i`` has ``width * 2**i``
  (64/128/256/512), times 4 at the output of a bottleneck block.
* ``depth``: residual blocks per stage, 1 to 4 stages (the first at stride 1, the others 2).
* ``block``: ``basic`` (two 3x3 convs) or ``bottleneck`` (1x1, 3x3, 1x1 with expansion 4).
* ``batch_norm`` / ``bn_momentum`` / ``activation``: after every conv; with batch norm off the
  convs get biases and the last conv of every residual branch starts at zero, so the deep
  un-normalised nets start as identities instead of exploding.
* ``block_dropout``: after every stage; ``dropout``, ``hidden``, ``head_scale``,
  ``num_classes``: the head after the global average pool.
"""

from __future__ import annotations

from torch import Tensor, nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.models.common import (
    ConvBnAct,
    Head,
    activation,
    check_stages,
    conv,
    dropout,
    norm,
)
from cifar_search.train.models.registry import register_model


def _branch_end(cfg: ModelConfig, c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Last conv + BN of a residual branch; zero-initialised when there is no batch norm."""
    last = conv(cfg, c_in, c_out, kernel)
    if not cfg.batch_norm:
        nn.init.zeros_(last.weight)
    return nn.Sequential(last, norm(cfg, c_out))


def shortcut(cfg: ModelConfig, c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity, or a 1x1 conv + BN projection when the shape changes."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(conv(cfg, c_in, c_out, 1, stride), norm(cfg, c_out))


class BasicBlock(nn.Module):
    """act(conv3x3-bn-act-conv3x3-bn + shortcut)."""

    expansion = 1

    def __init__(self, cfg: ModelConfig, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            ConvBnAct(cfg, c_in, planes, 3, stride), _branch_end(cfg, planes, planes, 3)
        )
        self.shortcut = shortcut(cfg, c_in, planes, stride)
        self.act = activation(cfg)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.branch(x) + self.shortcut(x))
        return out


class Bottleneck(nn.Module):
    """act(conv1x1-bn-act-conv3x3-bn-act-conv1x1(x4)-bn + shortcut)."""

    expansion = 4

    def __init__(self, cfg: ModelConfig, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.branch = nn.Sequential(
            ConvBnAct(cfg, c_in, planes, 1),
            ConvBnAct(cfg, planes, planes, 3, stride),
            _branch_end(cfg, planes, c_out, 1),
        )
        self.shortcut = shortcut(cfg, c_in, c_out, stride)
        self.act = activation(cfg)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.act(self.branch(x) + self.shortcut(x))
        return out


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


@register_model("resnet", width=64, depth=(2, 2, 2, 2), block="basic")
def resnet(cfg: ModelConfig) -> nn.Module:
    """Stem, ``len(depth)`` stages of residual blocks, global average pool, head."""
    check_stages(cfg, "resnet", 1, 4)
    block = BLOCKS[cfg.block]
    layers: list[nn.Module] = [ConvBnAct(cfg, 3, cfg.width)]
    c_in = cfg.width
    for i, n in enumerate(cfg.depth):
        planes = cfg.width * 2**i
        blocks = []
        for j in range(n):
            blocks.append(block(cfg, c_in, planes, 2 if i > 0 and j == 0 else 1))
            c_in = planes * block.expansion
        layers.append(nn.Sequential(*blocks, dropout(cfg.block_dropout)))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), Head(cfg, c_in))
