"""Size and cost of a model: parameters, forward FLOPs, a per-layer table (torchinfo)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cifar_search.train.config import ModelConfig
from cifar_search.train.runtime import eval_mode


def count_params(model: nn.Module) -> int:
    """All parameters, trainable or frozen (airbench's whitening conv counts)."""
    return sum(p.numel() for p in model.parameters())


def count_trainable_params(model: nn.Module) -> int:
    """Parameters with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def count_flops(model: nn.Module, input_size: int = 32) -> int:
    """Forward FLOPs of one image of ``input_size`` pixels, in eval mode.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode`: matrix multiplies and
    convolutions at 2 FLOPs per multiply-add; normalisation, activations and pooling are not
    counted (they are a few percent).
    """
    x = torch.rand(1, 3, input_size, input_size, device=_device(model))
    counter = FlopCounterMode(display=False)
    with eval_mode(model), torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


def model_cost(cfg: ModelConfig) -> tuple[int, int]:
    """``(parameters, forward FLOPs per image)`` of ``cfg``'s model, built on the meta device:
    no memory, no initialisation, fast enough for tables of many configs."""
    from cifar_search.train.models.registry import create_model

    with torch.device("meta"):
        model = create_model(cfg)
    return count_params(model), count_flops(model, cfg.input_size)


def summary(model: nn.Module, input_size: int = 32, depth: int = 4) -> str:
    """Per-layer table (output shape, parameters, mult-adds) with totals, plus forward FLOPs.

    Args:
        model: Any module taking ``(1, 3, input_size, input_size)`` images.
        input_size: Pixels of the (square) input image.
        depth: Nesting depth of the modules listed.
    """
    import torchinfo

    with eval_mode(model):
        stats = torchinfo.summary(
            model,
            input_size=(1, 3, input_size, input_size),
            col_names=("output_size", "num_params", "mult_adds"),
            depth=depth,
            device=_device(model),
            mode="eval",
            row_settings=("var_names",),
            verbose=0,
        )
    flops = count_flops(model, input_size)
    lines = [
        str(stats),
        f"Parameters: {count_params(model):,} "
        f"({count_trainable_params(model):,} trainable)",
        f"Forward FLOPs per image: {flops:,} ({flops / 1e9:.3f} GFLOPs, "
        "2 x conv/linear mult-adds, FlopCounterMode)",
    ]
    return "\n".join(lines)
