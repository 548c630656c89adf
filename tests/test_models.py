"""The model registry and every family: shapes, gradients, switches, counts, preprocessing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from cifar_search.errors import ConfigError
from cifar_search.search.space import DEFAULT_SPACE
from cifar_search.train.config import ModelConfig, OptimConfig, TrainConfig
from cifar_search.train.loader import DeviceLoader
from cifar_search.train.models import (
    Preprocess,
    count_flops,
    count_params,
    create_model,
    default_config,
    list_models,
    model_cost,
    register_model,
    summary,
)
from cifar_search.train.models.shake_shake import ShakeShake
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.trainer import train

FAMILY_NAMES = list_models()


def tiny(family: str, **changes: object) -> ModelConfig:
    """The family's canonical member shrunk to width 8 and one conv / block per stage."""
    cfg = default_config(family)
    small = {"width": 8, "depth": (1,) * len(cfg.depth), "hidden": min(cfg.hidden, 32)}
    return dataclasses.replace(cfg, **{**small, **changes})  # type: ignore[arg-type]


def forward_backward(cfg: ModelConfig, batch: int = 2) -> torch.Tensor:
    """Train-mode forward and backward on random images; checks shape and finiteness."""
    torch.manual_seed(0)
    model = create_model(cfg).train()
    logits = model(torch.rand(batch, 3, 32, 32))
    assert logits.shape == (batch, cfg.num_classes)
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
    return logits


def test_registry_has_every_family_of_the_search_space() -> None:
    assert set(FAMILY_NAMES) == set(DEFAULT_SPACE.get("family").choices)
    assert sorted(FAMILY_NAMES) == FAMILY_NAMES


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_forward_backward(family: str) -> None:
    forward_backward(tiny(family))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_without_batch_norm_convs_get_biases(family: str) -> None:
    cfg = tiny(family, batch_norm=False)
    forward_backward(cfg)
    model = create_model(cfg)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is not None for c in convs)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("activation", ["relu", "gelu", "celu", "silu"])
def test_activations(family: str, activation: str) -> None:
    cfg = tiny(family, activation=activation)
    forward_backward(cfg)
    kinds = {type(m).__name__.lower() for m in create_model(cfg).modules()}
    assert activation in kinds


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fields_are_honoured(family: str) -> None:
    cfg = tiny(family, num_classes=7, bn_momentum=0.3, dropout=0.2, block_dropout=0.1,
               hidden=12, head_scale=0.5)
    forward_backward(cfg)
    model = create_model(cfg)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.3 for m in bns)
    rates = sorted({m.p for m in model.modules() if isinstance(m, nn.Dropout)})
    assert rates == [0.1, 0.2]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[-2].out_features == 12 and linears[-1].out_features == 7


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_state_dict_rebuilds_the_same_model(family: str) -> None:
    cfg = tiny(family)
    torch.manual_seed(0)
    a = create_model(cfg).eval()
    torch.manual_seed(1)
    b = create_model(cfg).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x))
    assert "preprocess.mean" in a.state_dict()  # the normalisation travels with the weights


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (ModelConfig(family="resnet9", depth=(1, 0, 1), head_scale=0.125), 6_573_120),
        (ModelConfig(family="resnet9", depth=(1, 0, 1), block_dropout=0.05), 6_573_120),
        (ModelConfig(family="resnet", depth=(2, 2, 2, 2)), 11_173_962),
        (ModelConfig(family="resnet", depth=(3, 4, 6, 3)), 21_282_122),
        (ModelConfig(family="resnet", depth=(3, 4, 6, 3), block="bottleneck"), 23_520_842),
        (ModelConfig(family="plain_cnn", width=32, depth=(2, 2, 2)), 307_946),
        (ModelConfig(family="shake_shake", width=32, depth=(4, 4, 4)), 2_923_162),  # 2.9M
        (ModelConfig(family="shake_shake", width=64, depth=(4, 4, 4)), 11_653_978),  # 11.7M
        (ModelConfig(family="wide_resnet", width=160, depth=(4, 4, 4)), 36_479_194),  # 36.5M
        (ModelConfig(family="airbench", width=64, depth=(2, 2, 2)), 1_972_792),
    ],
)
def test_published_parameter_counts(cfg: ModelConfig, expected: int) -> None:
    assert model_cost(cfg)[0] == expected


def test_count_flops_matches_a_hand_count() -> None:
    cfg = ModelConfig(family="plain_cnn", width=4, depth=(1,), batch_norm=False)
    model = create_model(cfg)
    conv_macs = 32 * 32 * 4 * 3 * 3 * 3  # output pixels x out channels x in channels x 3x3
    linear_macs = (4 * 16 * 16) * 10  # flattened 16x16x4 features -> 10 classes
    assert count_flops(model) == 2 * (conv_macs + linear_macs)
    assert count_params(model) == (3 * 9 * 4 + 4) + (1024 * 10 + 10)


def test_count_flops_is_positive_and_leaves_the_mode_alone() -> None:
    model = create_model(tiny("resnet")).train()
    assert count_flops(model) > 0
    assert model.training
    assert model_cost(tiny("resnet")) == (count_params(model), count_flops(model))


def test_preprocess_normalises_and_centre_crops() -> None:
    pre = Preprocess((0.5, 0.4, 0.3), (0.2, 0.25, 0.5), input_size=28)
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.5]).view(1, 3, 1, 1)
    torch.testing.assert_close(pre(x), (x[..., 2:30, 2:30] - mean) / std)
    small = torch.rand(2, 3, 28, 28)  # training crops arrive at the input size: untouched
    torch.testing.assert_close(pre(small), (small - mean) / std)


def test_model_trained_on_crops_sees_the_centre_crop() -> None:
    model = create_model(ModelConfig(family="alexnet", input_size=28)).eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model(x[..., 2:30, 2:30].contiguous()))


def test_airbench_whitening_is_initialised_from_data_and_stays_frozen() -> None:
    torch.manual_seed(0)
    model = create_model(tiny("airbench"))
    whiten = model.net[0]
    assert not whiten.weight.requires_grad
    before = whiten.weight.clone()
    images = torch.rand(64, 3, 32, 32)
    model.init_from_data(images)
    assert not torch.equal(before, whiten.weight)
    assert not whiten.weight.requires_grad
    # the first 12 filters whiten 2x2 patches of the (normalised) data: ~identity covariance
    with torch.no_grad():
        out = nn.functional.conv2d(model.preprocess(images), whiten.weight[:12])
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = flat.T @ flat / len(flat)
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), atol=0.05, rtol=0)
    # training leaves it alone
    after_init = whiten.weight.clone()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.1)
    model.train()(images[:4]).sum().backward()
    opt.step()
    assert torch.equal(after_init, whiten.weight)


def test_only_airbench_initialises_from_data() -> None:
    have = [f for f in FAMILY_NAMES if hasattr(create_model(tiny(f)), "init_from_data")]
    assert have == ["airbench"]


def test_shake_shake_mixes_forward_with_alpha_and_backward_with_beta() -> None:
    a = torch.ones(2, 1, 1, 1, requires_grad=True)
    b = torch.zeros(2, 1, 1, 1, requires_grad=True)
    alpha = torch.tensor([0.2, 0.7]).view(2, 1, 1, 1)
    beta = torch.tensor([0.9, 0.1]).view(2, 1, 1, 1)
    out = ShakeShake.apply(a, b, alpha, beta)
    torch.testing.assert_close(out, alpha)
    out.sum().backward()
    torch.testing.assert_close(a.grad, beta)
    torch.testing.assert_close(b.grad, 1 - beta)


def test_shake_shake_is_random_in_training_and_deterministic_at_eval() -> None:
    model = create_model(tiny("shake_shake"))
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_unknown_family_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown model family 'nope' \(known: .*resnet9"):
        create_model(ModelConfig(family="nope"))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (ModelConfig(family="resnet", depth=(1,) * 5), r"resnet depth must have 1 to 4 stages"),
        (ModelConfig(family="resnet9", depth=(1, 1)), r"resnet9 depth must have 3 stages"),
        (ModelConfig(family="airbench", depth=(2, 0, 2)), r"airbench depth must be >= 1"),
        (ModelConfig(family="plain_cnn", depth=(1,) * 6), r"plain_cnn depth must have 1 to 5"),
        (ModelConfig(family="vgg", depth=(1,) * 5, input_size=28), r"input_size >= 32"),
        (ModelConfig(family="shake_shake", width=17), r"width must be even.*17"),
        (ModelConfig(dropout=1.5), r"model.dropout must be in \[0, 1\)"),
        (ModelConfig(head_scale=0.0), r"head_scale must be > 0"),
        (ModelConfig(bn_momentum=1.5), r"bn_momentum must be in \(0, 1\]"),
    ],
)
def test_bad_configs_name_the_value(cfg: ModelConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model(cfg)


def test_register_model_refuses_duplicates_and_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="registered twice"):
        register_model("resnet")(lambda cfg: nn.Identity())
    with pytest.raises(ConfigError, match="unknown ModelConfig field 'depht'"):
        register_model("other", depht=(1,))


def test_summary_lists_layers_with_params_mult_adds_and_flops() -> None:
    text = summary(create_model(tiny("resnet9")))
    for needle in ("Param #", "Mult-Adds", "Total params", "Forward FLOPs per image", "Conv2d"):
        assert needle in text


def test_airbench_whitening_bias_trains_for_its_epochs_then_freezes() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(64) % 10
    model_cfg = dataclasses.replace(tiny("airbench"), whiten_bias_epochs=1)
    model = create_model(model_cfg)
    seen: list[torch.Tensor] = []

    def snapshot(epoch: int, _metrics: object) -> None:
        seen.append(model.net[0].bias.detach().clone())

    cfg = TrainConfig(model=model_cfg, epochs=3, batch_size=16,
                      optim=OptimConfig(lr=0.1, schedule="constant"))
    train(model, cfg, DeviceLoader(x, y, 16, shuffle=True, seed=0), None,
          resolve_runtime("cpu", "fp32"), seed=0, on_epoch_end=snapshot)
    assert seen[0].abs().sum() > 0  # trained in epoch 1 (it starts at zero)
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[1], seen[2])  # frozen after
    assert not model.net[0].bias.requires_grad
    model.set_epoch(1)
    assert model.net[0].bias.requires_grad  # a fresh run (or epoch 1 again) trains it
