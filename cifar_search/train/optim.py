"""Optimisers from an :class:`~cifar_search.train.config.OptimConfig`.

Weight decay follows the PyTorch convention of each optimiser (coupled L2 for SGD and Adam,
decoupled for AdamW). With ``decay_norm_and_bias=False``, every parameter with ``ndim <= 1``
(norm-layer weights and all biases) goes into a group without weight decay.

With ``norm_bias_lr_scale`` = s != 1, the biases of batch/group/layer norms get their own group
at ``s`` times the learning rate and ``1 / s`` times the weight decay, so that their decay per
step (lr x wd for coupled SGD) is what every other parameter gets: airbench's ``bias_scaler``
(64), which lets a net whose norms have frozen unit scales move their shifts fast. Schedules
multiply every group's learning rate alike, so the ratio holds throughout.

The fused implementation is used when the parameters' device has fused kernels (CUDA and CPU in
recent PyTorch: on the 2-core reference CPU, fused SGD steps a ResNet-18 2.2x and fused AdamW 8x
faster than the default loop), else PyTorch's default (``foreach`` on accelerators).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from cifar_search.errors import ConfigError
from cifar_search.train.config import OptimConfig

logger = logging.getLogger(__name__)

# Devices with fused optimiser kernels (torch.utils._foreach_utils lists them; private API).
_FUSED_DEVICES = ("cuda", "cpu", "xpu", "mps", "hpu")


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def norm_biases(model: nn.Module) -> list[nn.Parameter]:
    """The trainable shift (bias) of every batch, group and layer norm in ``model``."""
    found: dict[int, nn.Parameter] = {}  # by id: a shared norm is listed once
    for module in model.modules():
        if isinstance(module, _NORMS) and module.bias is not None and module.bias.requires_grad:
            found[id(module.bias)] = module.bias
    return list(found.values())


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Trainable parameters split into a decay and (optionally) a no-decay group, and a group
    of norm biases at a scaled learning rate when ``cfg.norm_bias_lr_scale != 1``.

    Frozen parameters (``requires_grad=False``) are left out; empty groups are dropped. The
    first group is always the bulk of the weights, whose ``lr`` the trainer reports.

    Args:
        model: The network; shared parameters are counted once.
        cfg: ``lr``, ``weight_decay``, ``decay_norm_and_bias`` and ``norm_bias_lr_scale``.

    Returns:
        Param groups for a ``torch.optim.Optimizer``, each with a ``name`` key.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters (all requires_grad=False).")
    scale = cfg.norm_bias_lr_scale
    fast = norm_biases(model) if scale != 1 else []
    fast_ids = {id(p) for p in fast}
    params = [p for p in params if id(p) not in fast_ids]
    if cfg.decay_norm_and_bias or cfg.weight_decay == 0:
        groups = [{"name": "all", "params": params, "weight_decay": cfg.weight_decay}]
        fast_decay = cfg.weight_decay / scale
    else:
        groups = [
            {"name": "decay", "params": [p for p in params if p.ndim > 1],
             "weight_decay": cfg.weight_decay},
            {"name": "no_decay", "params": [p for p in params if p.ndim <= 1],
             "weight_decay": 0.0},
        ]
        fast_decay = 0.0
    groups.append({"name": "norm_bias", "params": fast, "lr": cfg.lr * scale,
                   "weight_decay": fast_decay})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names, at ``cfg.lr`` (schedules multiply it per step).

    ``sgd`` uses ``momentum`` and ``nesterov`` (Nesterov with momentum 0 is plain SGD and is
    built as such); ``adam`` and ``adamw`` use ``betas=(momentum, beta2)``.

    Args:
        model: Its parameters should already be on their training device.
        cfg: The optimisation section of the config.

    Returns:
        A fused (or foreach) ``SGD``, ``Adam`` or ``AdamW``.
    """
    groups = param_groups(model, cfg)
    device = groups[0]["params"][0].device
    common: dict[str, Any] = {"lr": cfg.lr}
    if cfg.optimizer == "sgd":
        cls: Any = torch.optim.SGD
        common |= {"momentum": cfg.momentum, "nesterov": cfg.nesterov and cfg.momentum > 0}
    elif cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        common |= {"betas": (cfg.momentum, cfg.beta2)}
    else:
        raise ConfigError(f"unknown optimizer {cfg.optimizer!r} (known: sgd, adam, adamw).")
    if device.type in _FUSED_DEVICES:
        try:
            return cls(groups, **common, fused=True)  # type: ignore[no-any-return]
        except (RuntimeError, ValueError) as exc:  # dtype or device without fused kernels
            logger.debug("fused %s unavailable on %s: %s", cls.__name__, device, exc)
    return cls(groups, **common)  # type: ignore[no-any-return]  # PyTorch picks foreach
