"""``plain_cnn``: the ENSTA ROB313 network, stages of duplicated 3x3 convs and max-pools.

Fields read:

* ``width``: channels of the first stage; each later stage doubles them (ENSTA: 32 -> 32/64/128).
* ``depth``: 3x3 convs per stage, 1 to 5 stages, each stage followed by a 2x2 max-pool
  (ENSTA: ``(2, 2, 2)``).
* ``batch_norm`` / ``bn_momentum`` / ``activation``: after every conv (no BN: biased convs).
* ``block_dropout``: dropout after every stage's pool.
* ``hidden``, ``dropout``, ``head_scale``, ``num_classes``: the dense head on the flattened
  features (ENSTA: dense 2048 -> 10, ~308k parameters in all).
* ``input_size``: the flattened size follows it (28 -> 3x3 after three pools).
"""

from __future__ import annotations

from torch import nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.models.common import ConvBnAct, Head, check, check_stages, dropout
from cifar_search.train.models.registry import register_model


class PlainStage(nn.Sequential):
    """``n`` conv-bn-act, 2x2 max-pool, dropout."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, n: int) -> None:
        convs = [ConvBnAct(cfg, c_in if i == 0 else c_out, c_out) for i in range(n)]
        super().__init__(*convs, nn.MaxPool2d(2), dropout(cfg.block_dropout))


@register_model("plain_cnn", width=32, depth=(2, 2, 2), dropout=0.3, block_dropout=0.2)
def plain_cnn(cfg: ModelConfig) -> nn.Module:
    """Stages of ``depth[i]`` convs at ``width * 2**i`` channels, then a dense head."""
    check_stages(cfg, "plain_cnn", 1, 5)
    size = cfg.input_size // 2 ** len(cfg.depth)  # pixels after the pools
    check(size >= 1, f"plain_cnn: {len(cfg.depth)} pools need input_size >= "
          f"{2 ** len(cfg.depth)}, but got {cfg.input_size=}.")
    layers: list[nn.Module] = []
    c_in = 3
    for i, n in enumerate(cfg.depth):
        c_out = cfg.width * 2**i
        layers.append(PlainStage(cfg, c_in, c_out, n))
        c_in = c_out
    return nn.Sequential(*layers, Head(cfg, c_in * size * size))
