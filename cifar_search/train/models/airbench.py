"""``airbench``: the fast network of KellerJordan/airbench94, built from ModelConfig.

A 2x2 conv (24 channels, no padding) frozen as a *whitening* layer, initialised from the
eigenvectors of the 2x2 patch covariance of training images (``init_from_data``, called by the
trainer before training), then three conv groups ``conv-pool-bn-act-(conv-bn-act) x (d - 1)``
at 64 / 256 / 256 channels, a global max-pool and a bias-free linear head scaled by
``head_scale`` (airbench: 1/9). Convs start as identity on their first channels (dirac), batch
norms have a frozen scale of 1 and eps 1e-12, as in airbench.

Fields read:

* ``width``: channels of the first group; the others scale with ``width / 64``.
* ``depth``: convs per group, 3 groups (airbench94 ``(2, 2, 2)``; airbench96 uses 3).
* ``batch_norm`` / ``bn_momentum``: PyTorch convention (airbench's "0.6" is 0.4 here);
  no BN: biased convs. ``activation``: airbench uses ``gelu``.
* ``block_dropout``: after every group; ``dropout``, ``hidden``, ``head_scale``,
  ``num_classes``: the head.
* ``whiten_bias_epochs``: the whitening bias trains for that many epochs and is then frozen
  (airbench: 3; 0: it trains throughout). The trainer calls :meth:`AirbenchNet.set_epoch`.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.models.common import Head, activation, check_stages, dropout, scaled
from cifar_search.train.models.registry import register_model

CHANNELS = (64, 256, 256)  # per group at width 64
WHITEN_KERNEL = 2  # pixels
WHITEN_WIDTH = 2 * 3 * WHITEN_KERNEL**2  # +/- eigenvectors of the 12-dim patch covariance
WHITEN_EPS = 5e-4  # added to the eigenvalues


def dirac_conv(cfg: ModelConfig, c_in: int, c_out: int) -> nn.Conv2d:
    """3x3 conv whose first ``min(c_in, c_out)`` filters start as the identity."""
    layer = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not cfg.batch_norm)
    with torch.no_grad():
        nn.init.dirac_(layer.weight[: min(c_in, c_out)])
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def airbench_norm(cfg: ModelConfig, channels: int) -> nn.Module:
    """BatchNorm with a frozen unit scale and a trained shift, or identity when off."""
    if not cfg.batch_norm:
        return nn.Identity()
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=cfg.bn_momentum)
    bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Sequential):
    """conv-pool-bn-act, then ``n - 1`` x conv-bn-act, dropout."""

    def __init__(self, cfg: ModelConfig, c_in: int, c_out: int, n: int) -> None:
        layers: list[nn.Module] = [dirac_conv(cfg, c_in, c_out), nn.MaxPool2d(2),
                                   airbench_norm(cfg, c_out), activation(cfg)]
        for _ in range(n - 1):
            layers += [dirac_conv(cfg, c_out, c_out), airbench_norm(cfg, c_out), activation(cfg)]
        super().__init__(*layers, dropout(cfg.block_dropout))


class Whiten(nn.Conv2d):
    """The frozen 2x2 whitening conv; its weight comes from :meth:`init_from_data`."""

    def __init__(self) -> None:
        super().__init__(3, WHITEN_WIDTH, WHITEN_KERNEL, padding=0, bias=True)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Set the weight to +/- the scaled eigenvectors of the patch covariance of
        ``images`` (normalised, ``(N, 3, H, W)``)."""
        k, c = WHITEN_KERNEL, images.shape[1]
        cov = torch.zeros(c * k * k, c * k * k, dtype=torch.float64, device=images.device)
        count = 0
        for chunk in torch.split(images, 500):  # bounded memory: ~50 MB of patches at a time
            patches = chunk.unfold(2, k, 1).unfold(3, k, 1)  # (n, C, H', W', k, k)
            flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
            cov += flat.T @ flat
            count += len(flat)
        cov /= count
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + WHITEN_EPS)[:, None]).flip(0)
        filters = filters.reshape(c * k * k, c, k, k)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))


class AirbenchNet(nn.Sequential):
    """whiten-act, conv groups, global max-pool, head; exposes ``init_from_data``."""

    def __init__(self, cfg: ModelConfig) -> None:
        widths = scaled(cfg.width, CHANNELS[0], CHANNELS)
        layers: list[nn.Module] = [Whiten(), activation(cfg)]
        c_in = WHITEN_WIDTH
        for n, c_out in zip(cfg.depth, widths, strict=True):
            layers.append(ConvGroup(cfg, c_in, c_out, n))
            c_in = c_out
        super().__init__(*layers, nn.AdaptiveMaxPool2d(1), Head(cfg, c_in, bias=False))
        self.whiten_bias_epochs = cfg.whiten_bias_epochs

    def init_from_data(self, images: Tensor) -> None:
        """Initialise the whitening conv from normalised training images ``(N, 3, H, W)``."""
        cast(Whiten, self[0]).init_from_data(images)

    def set_epoch(self, epoch: int) -> None:
        """Before 1-based ``epoch``: freeze the whitening bias once its epochs are done."""
        bias = cast(Whiten, self[0]).bias
        if bias is not None:
            bias.requires_grad_(self.whiten_bias_epochs == 0 or epoch <= self.whiten_bias_epochs)


@register_model("airbench", width=64, depth=(2, 2, 2), activation="gelu", bn_momentum=0.4,
                head_scale=0.125)
def airbench(cfg: ModelConfig) -> nn.Module:
    """Whitening conv, three conv groups, global max-pool, scaled bias-free head."""
    check_stages(cfg, "airbench", 3, 3)
    return AirbenchNet(cfg)
