"""Optimisers: groups, frozen parameters, hyperparameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_search.errors import ConfigError
from cifar_search.train.config import OptimConfig
from cifar_search.train.optim import build_optimizer, param_groups


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)
    )


def test_no_decay_group_holds_norm_weights_and_biases() -> None:
    net = _net()
    groups = param_groups(net, OptimConfig(weight_decay=5e-4, decay_norm_and_bias=False))
    by_name = {g["name"]: g for g in groups}
    assert by_name["decay"]["weight_decay"] == 5e-4
    assert by_name["no_decay"]["weight_decay"] == 0.0
    assert {id(p) for p in by_name["decay"]["params"]} == {id(net[0].weight), id(net[3].weight)}
    no_decay = {id(net[0].bias), id(net[1].weight), id(net[1].bias), id(net[3].bias)}
    assert {id(p) for p in by_name["no_decay"]["params"]} == no_decay


def test_one_group_when_everything_decays() -> None:
    groups = param_groups(_net(), OptimConfig(decay_norm_and_bias=True))
    assert len(groups) == 1 and len(groups[0]["params"]) == 6


def test_frozen_parameters_are_skipped() -> None:
    net = _net()
    net[0].requires_grad_(False)
    opt = build_optimizer(net, OptimConfig(decay_norm_and_bias=False))
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net[0].weight) not in ids and id(net[0].bias) not in ids
    assert len(ids) == 4
    net.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable"):
        build_optimizer(net, OptimConfig())


def test_sgd_adam_adamw_hyperparameters() -> None:
    net = _net()
    sgd = build_optimizer(net, OptimConfig(optimizer="sgd", lr=0.2, momentum=0.8, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD)
    g = sgd.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"]) == (0.2, 0.8, True)
    plain = build_optimizer(net, OptimConfig(optimizer="sgd", momentum=0.0, nesterov=True))
    assert plain.param_groups[0]["nesterov"] is False
    adam = build_optimizer(net, OptimConfig(optimizer="adam", lr=1e-3, momentum=0.85, beta2=0.99))
    assert isinstance(adam, torch.optim.Adam) and not isinstance(adam, torch.optim.AdamW)
    assert adam.param_groups[0]["betas"] == (0.85, 0.99)
    adamw = build_optimizer(net, OptimConfig(optimizer="adamw", weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["weight_decay"] == 0.05


def test_fused_on_cpu_and_a_step_works() -> None:
    net = _net()
    opt = build_optimizer(net, OptimConfig(optimizer="adamw", decay_norm_and_bias=False))
    assert opt.defaults.get("fused") is True
    before = net[3].weight.detach().clone()
    net(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    assert not torch.equal(before, net[3].weight)


def test_norm_biases_get_a_scaled_lr_and_the_same_decay_per_step() -> None:
    from cifar_search.train.schedules import build_scheduler

    net = _net()
    cfg = OptimConfig(lr=0.5, weight_decay=1e-3, norm_bias_lr_scale=64.0, schedule="onecycle")
    groups = {g["name"]: g for g in param_groups(net, cfg)}
    assert [id(p) for p in groups["norm_bias"]["params"]] == [id(net[1].bias)]
    assert groups["norm_bias"]["lr"] == 32.0
    assert groups["norm_bias"]["weight_decay"] == pytest.approx(1e-3 / 64)
    assert id(net[1].bias) not in {id(p) for p in groups["all"]["params"]}
    opt = build_optimizer(net, cfg)
    assert opt.param_groups[0]["name"] == "all"  # the lr the trainer reports
    sched = build_scheduler(opt, cfg, 2, 5)
    for _ in range(3):
        opt.step()
        sched.step()
    bulk, fast = opt.param_groups[0], opt.param_groups[1]
    assert fast["lr"] == pytest.approx(64 * bulk["lr"])  # the schedule keeps the ratio
    assert fast["lr"] * fast["weight_decay"] == pytest.approx(bulk["lr"] * bulk["weight_decay"])
    no_decay = {g["name"]: g for g in param_groups(
        net, OptimConfig(weight_decay=1e-3, decay_norm_and_bias=False, norm_bias_lr_scale=16))}
    assert set(no_decay) == {"decay", "no_decay", "norm_bias"}
    assert no_decay["norm_bias"]["weight_decay"] == 0.0
    assert len(param_groups(net, OptimConfig())) == 1  # scale 1: no extra group
