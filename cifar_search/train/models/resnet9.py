"""``resnet9``: DavidNet (Myrtle "How to train your ResNet"), also the ERA V1 custom ResNet.

``prep conv 64 / layer1 conv 128 + pool + residual(2 x conv 128) / layer2 conv 256 + pool /
layer3 conv 512 + pool + residual(2 x conv 512) / global max-pool / fc 10 (no bias) / x 0.125``:
6,573,120 parameters at width 64, depth ``(1, 0, 1)``.

Fields read:

* ``width``: channels of the prep layer; every channel count scales with ``width / 64``
  (64 / 128 / 256 / 512 at width 64).
* ``depth``: residual blocks (two conv-bn-act each, added to their input) after layer1, layer2
  and layer3; DavidNet is ``(1, 0, 1)``.
* ``batch_norm`` / ``bn_momentum`` / ``activation``: after every conv (no BN: biased convs).
* ``block_dropout``: after every layer, residual blocks included (the ERA variant).
* ``head_scale``: the logit multiplier (DavidNet 0.125); ``dropout``, ``hidden``,
  ``num_classes``: the head, whose classifier has no bias.
"""

from __future__ import annotations

from torch import Tensor, nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.models.common import ConvBnAct, Head, check_stages, dropout, scaled
from cifar_search.train.models.registry import register_model

CHANNELS = (64, 128, 256, 512)  # prep, layer1, layer2, layer3 at width 64


class Residual(nn.Module):
    """``x + conv-bn-act(conv-bn-act(x))``."""

    def __init__(self, cfg: ModelConfig, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            ConvBnAct(cfg, channels, channels), ConvBnAct(cfg, channels, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.branch(x)
        return out


class Layer(nn.Sequential):
    """conv-bn-act, 2x2 max-pool, ``n`` residual blocks, dropout."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, n: int) -> None:
        residuals = [Residual(cfg, c_out) for _ in range(n)]
        super().__init__(
            ConvBnAct(cfg, c_in, c_out), nn.MaxPool2d(2), *residuals, dropout(cfg.block_dropout)
        )


@register_model("resnet9", width=64, depth=(1, 0, 1), head_scale=0.125)
def resnet9(cfg: ModelConfig) -> nn.Module:
    """Prep layer, three layers, global max-pool, bias-free classifier."""
    check_stages(cfg, "resnet9", 3, 3, min_depth=0)
    prep, *widths = scaled(cfg.width, CHANNELS[0], CHANNELS)
    layers: list[nn.Module] = [ConvBnAct(cfg, 3, prep)]
    c_in = prep
    for n, c_out in zip(cfg.depth, widths, strict=True):
        layers.append(Layer(cfg, c_in, c_out, n))
        c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), Head(cfg, c_in, bias=False))
