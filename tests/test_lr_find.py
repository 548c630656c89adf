"""LR range test: ramp, divergence stop, suggestion, state restored, plot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from cifar_search.train.config import OptimConfig, TrainConfig
from cifar_search.train.loader import DeviceLoader
from cifar_search.train.lr_find import LRFindConfig, lr_find, plot, suggest
from cifar_search.train.runtime import resolve_runtime

RUNTIME = resolve_runtime("cpu", "fp32")


def _loader(n: int = 96, batch_size: int = 16) -> DeviceLoader:
    """4 classes told apart by their bright channel; uint8 (n, 3, 32, 32)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 4
    x = torch.randint(0, 80, (n, 3, 32, 32), generator=g)
    for c in range(3):
        x[:, c] += 150 * (y == c)[:, None, None]
    return DeviceLoader(x.to(torch.uint8), y, batch_size, shuffle=True)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_ramp_stops_at_divergence_and_restores_the_model() -> None:
    model = _model()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = _loader()
    cfg = TrainConfig(optim=OptimConfig(optimizer="sgd", momentum=0.9))
    result = lr_find(model, cfg, loader, RUNTIME,
                     settings=LRFindConfig(start_lr=1e-4, end_lr=1e4, num_steps=60))
    assert result.diverged and 5 < len(result.lrs) < 60
    assert loader.epoch > 1  # 6 batches per pass: the loader was cycled
    assert result.lrs[0] == pytest.approx(1e-4)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))  # exponential ramp
    assert 1e-4 <= result.suggestion <= 1e4 and result.method == "steepest"
    assert all(math.isfinite(x) for x in result.losses)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not model.training


def test_suggestion_is_the_steepest_descent_or_min_over_10() -> None:
    lrs = [10.0**e for e in range(-6, 2)]  # 8 points
    losses = [2.3, 2.3, 2.2, 1.5, 1.0, 0.9, 1.5, 5.0]
    s = LRFindConfig(skip_start=1, skip_end=1)
    assert suggest(lrs, losses, s) == (1e-3, "steepest")
    assert suggest(lrs[:4], losses[:4], LRFindConfig()) == pytest.approx((1e-4, "min/10"))


def test_plot_writes_html_even_when_png_is_asked(tmp_path: Path) -> None:
    result = lr_find(_model(), TrainConfig(), _loader(), RUNTIME,
                     settings=LRFindConfig(num_steps=20, skip_start=2, skip_end=2))
    html = plot(result, tmp_path / "curve.html")
    assert html.is_file() and "Learning-rate range test" in html.read_text()
    png = plot(result, tmp_path / "curve.png")
    assert png.is_file() and png.suffix in (".png", ".html")
