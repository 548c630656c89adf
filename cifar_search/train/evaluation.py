"""Evaluation with optional test-time augmentation (TTA); used by the trainer and by retrain.

``tta="flip"`` averages the logits of each image and its mirror. ``"flip_translate"`` also
averages mirrored copies shifted by :data:`TTA_SHIFT` pixels up-left and down-right (reflect
padding), weighted half and half with the unshifted pair, as airbench does.
:class:`TTAModel` is the same average as a module, so it can be exported and run anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_search.errors import ConfigError
from cifar_search.train.config import TTA
from cifar_search.train.runtime import Runtime, eval_mode

EVAL_BATCH = 1024  # images per evaluation step (validation and test)

TTA_SHIFT = 2  # pixels of the ``flip_translate`` shifts (airbench94 uses 1)

Forward = Callable[[Tensor], Tensor]


class Loader(Protocol):
    """Batches of (float images in [0, 1] ``(B, 3, H, W)``, labels ``(B,)`` or soft targets)."""

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...
    def __len__(self) -> int: ...


def evaluate(
    model: nn.Module, loader: Loader, runtime: Runtime, tta: TTA = "none"
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (fraction in [0, 1]) of ``model`` on ``loader``.

    Runs in eval mode (the previous mode is restored) under ``runtime.autocast()``; the model is
    moved to ``runtime.device`` and ``runtime.memory_format`` first.
    """
    place(model, runtime)
    return loss_and_accuracy(*logits_and_labels(model, model, loader, runtime, tta))


def predict_logits(
    model: nn.Module, loader: Loader, runtime: Runtime, tta: TTA = "none"
) -> tuple[Tensor, Tensor]:
    """Float32 logits ``(N, classes)`` and int64 labels ``(N,)`` on the CPU, in loader order.

    Soft targets are turned into labels by their argmax. Used for confusion matrices.
    """
    place(model, runtime)
    logits, labels = logits_and_labels(model, model, loader, runtime, tta)
    return logits.cpu(), labels.cpu()


def place(model: nn.Module, runtime: Runtime) -> nn.Module:
    """Move ``model`` (in place) to ``runtime.device`` and ``runtime.memory_format``."""
    return model.to(runtime.device).to(memory_format=runtime.memory_format)


def logits_and_labels(
    model: nn.Module, forward: Forward, loader: Loader, runtime: Runtime, tta: TTA
) -> tuple[Tensor, Tensor]:
    """Logits of ``forward`` (``model`` itself or its compiled call) and labels, on the device."""
    if tta not in ("none", "flip", "flip_translate"):
        raise ConfigError(f"tta must be none, flip or flip_translate, but got {tta!r}.")
    outs: list[Tensor] = []
    labels: list[Tensor] = []
    with eval_mode(model), torch.no_grad():
        for x, target in loader:
            with runtime.autocast():
                outs.append(tta_logits(forward, x, tta))
            labels.append(hard_labels(target))
    if not outs:
        raise ConfigError("the evaluation loader yielded no batches.")
    return torch.cat(outs), torch.cat(labels)


def tta_logits(forward: Forward, x: Tensor, tta: TTA) -> Tensor:
    """Float32 logits of a batch, averaged over the TTA views."""
    if tta == "none":
        return forward(x).float()
    logits = _flip_mean(forward, x)
    if tta == "flip":
        return logits
    s = TTA_SHIFT
    padded = F.pad(x, (s, s, s, s), mode="reflect")
    h, w = x.shape[-2:]
    shifted = [padded[..., :h, :w], padded[..., 2 * s :, 2 * s :]]
    translated = torch.stack([_flip_mean(forward, t) for t in shifted]).mean(0)
    return 0.5 * logits + 0.5 * translated


class TTAModel(nn.Module):
    """``net`` with its test-time augmentation inside: float [0, 1] ``(B, 3, H, W)`` -> the
    logits :func:`tta_logits` averages (float32), so an export reproduces the TTA accuracy."""

    def __init__(self, net: nn.Module, tta: TTA) -> None:
        super().__init__()
        if tta not in ("none", "flip", "flip_translate"):
            raise ConfigError(f"tta must be none, flip or flip_translate, but got {tta!r}.")
        self.net = net
        self.tta: TTA = tta

    def forward(self, x: Tensor) -> Tensor:
        return tta_logits(self.net, x, self.tta)


def loss_and_accuracy(logits: Tensor, labels: Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy; one synchronisation."""
    loss = F.cross_entropy(logits.float(), labels)
    acc = (logits.argmax(1) == labels).float().mean()
    values = torch.stack([loss, acc]).tolist()
    return float(values[0]), float(values[1])


def hard_labels(target: Tensor) -> Tensor:
    """Class indices from labels ``(B,)`` or soft targets ``(B, classes)`` (argmax)."""
    return target.argmax(1) if target.ndim == 2 else target


def _flip_mean(forward: Forward, x: Tensor) -> Tensor:
    return 0.5 * (forward(x).float() + forward(x.flip(-1)).float())
