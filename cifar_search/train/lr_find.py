"""Learning-rate range test (Leslie Smith 2015; fastai / torch-lr-finder style).

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_steps``
training steps while the loss is recorded and smoothed (bias-corrected exponential moving
average). The test stops early once the smoothed loss exceeds ``diverge_factor`` times its
minimum, or turns non-finite. The model's weights and buffers are restored afterwards, so the
test leaves no trace; the optimiser it uses is built for the test and thrown away.

Suggestion: the **steepest descent** point, the learning rate where the smoothed loss falls
fastest against ``log(lr)`` (the first ``skip_start`` and last ``skip_end`` points ignored, as
torch-lr-finder does). When too few points remain for a slope, it falls back to the learning rate
of the minimum loss divided by 10.

Example:
    >>> result = lr_find(model, cfg, train_loader, runtime)  # doctest: +SKIP
    >>> plot(result, "lr_find.html")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_search.errors import ConfigError
from cifar_search.train.config import TrainConfig
from cifar_search.train.evaluation import place
from cifar_search.train.optim import build_optimizer
from cifar_search.train.runtime import Runtime, seed_everything
from cifar_search.train.trainer import TrainLoader, init_from_data

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LRFindConfig:
    """Range of the test and its stopping rule."""

    start_lr: float = 1e-7  # learning rate of the first step
    end_lr: float = 10.0  # learning rate of the last step
    num_steps: int = 100  # training steps (batches), the loader is cycled if shorter
    smoothing: float = 0.98  # EMA factor of the loss (0: raw losses)
    diverge_factor: float = 4.0  # stop when the smoothed loss passes this times its minimum
    skip_start: int = 10  # points ignored at the start when looking for the steepest slope
    skip_end: int = 5  # ... and at the end


@dataclass(frozen=True)
class LRFindResult:
    """The curve (learning rate per step, smoothed loss) and the suggested learning rate."""

    lrs: list[float]
    losses: list[float]
    suggestion: float
    method: str  # "steepest" or "min/10"
    min_loss_lr: float  # learning rate of the lowest smoothed loss
    diverged: bool  # the test stopped before num_steps


def lr_find(
    model: nn.Module,
    cfg: TrainConfig,
    loader: TrainLoader,
    runtime: Runtime,
    *,
    settings: LRFindConfig | None = None,
    seed: int = 0,
) -> LRFindResult:
    """Run the range test with ``cfg``'s optimiser, loss and gradient clipping.

    Args:
        model: The network; trained during the test, then restored.
        cfg: Optimiser type, momentum, weight decay, label smoothing, grad clip are used; its
            learning rate and schedule are not.
        loader: Training batches (augmented like training).
        runtime: Device, autocast, memory format.
        settings: Range and stopping rule (default :class:`LRFindConfig`).
        seed: Seeds Python, NumPy and torch first.

    Returns:
        The recorded curve and the suggestion.
    """
    s = settings or LRFindConfig()
    if not 0 < s.start_lr < s.end_lr or s.num_steps < 2:
        raise ConfigError(f"lr-find needs 0 < start_lr < end_lr and num_steps >= 2, got {s}.")
    seed_everything(seed)
    place(model, runtime)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    try:
        init_from_data(model, loader, runtime)
        lrs, losses = _ramp(model, cfg, loader, runtime, s)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    return _result(lrs, losses, s)


def suggest(lrs: list[float], losses: list[float], settings: LRFindConfig) -> tuple[float, str]:
    """Steepest descent of ``losses`` against ``log(lrs)``, or min-loss lr / 10 (see module)."""
    lo, hi = settings.skip_start, len(losses) - settings.skip_end
    if hi - lo >= 3:
        slope = np.gradient(np.asarray(losses[lo:hi]), np.log(np.asarray(lrs[lo:hi])))
        return float(lrs[lo + int(np.argmin(slope))]), "steepest"
    return float(lrs[int(np.argmin(losses))]) / 10.0, "min/10"


def plot(result: LRFindResult, path: str | Path) -> Path:
    """Write the curve with plotly: HTML, or PNG when the suffix asks and kaleido is installed
    (else the HTML is written beside it). Returns the path written."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=result.lrs, y=result.losses, mode="lines", name="loss"))
    fig.add_vline(x=result.suggestion, line_dash="dash",
                  annotation_text=f"{result.method}: {result.suggestion:.2e}")
    fig.update_layout(title="Learning-rate range test", xaxis_title="learning rate",
                      yaxis_title="smoothed training loss", template="plotly_white")
    fig.update_xaxes(type="log")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        try:
            fig.write_image(str(out))
            return out
        except (ImportError, ValueError, RuntimeError) as exc:  # kaleido absent or broken
            logger.warning("PNG export unavailable (%s); writing HTML instead", exc)
            out = out.with_suffix(".html")
    fig.write_html(str(out), include_plotlyjs=True)
    return out


def _ramp(
    model: nn.Module, cfg: TrainConfig, loader: TrainLoader, runtime: Runtime, s: LRFindConfig
) -> tuple[list[float], list[float]]:
    optimizer = build_optimizer(model, cfg.optim)
    factor = (s.end_lr / s.start_lr) ** (1.0 / (s.num_steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    model.train()
    for step, (x, target) in enumerate(_cycle(loader, s.num_steps)):
        lr = s.start_lr * factor**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _train_step(model, optimizer, cfg, runtime, x, target)
        avg = s.smoothing * avg + (1 - s.smoothing) * loss
        smoothed = avg / (1 - s.smoothing ** (step + 1))
        if not math.isfinite(smoothed):
            break
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > s.diverge_factor * best:
            break
    return lrs, losses


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    runtime: Runtime,
    x: Tensor,
    target: Tensor,
) -> float:
    with runtime.autocast():
        logits = model(x)
    loss = F.cross_entropy(logits.float(), target, label_smoothing=cfg.optim.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    if cfg.optim.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    optimizer.step()
    return float(loss.item())


def _cycle(loader: TrainLoader, steps: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``steps`` batches, passing over the loader as many times as needed."""
    epoch, done = 0, 0
    while done < steps:
        epoch += 1
        loader.set_epoch(epoch)
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return
        if epoch > steps:  # an empty loader
            raise ConfigError("the loader yields no batches.")


def _result(lrs: list[float], losses: list[float], s: LRFindConfig) -> LRFindResult:
    if not losses:
        raise ConfigError(f"lr-find: the loss was not finite even at {s.start_lr:g}.")
    suggestion, method = suggest(lrs, losses, s)
    return LRFindResult(
        lrs=lrs,
        losses=losses,
        suggestion=suggestion,
        method=method,
        min_loss_lr=float(lrs[int(np.argmin(losses))]),
        diverged=len(lrs) < s.num_steps,
    )
