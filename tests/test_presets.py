"""The presets: complete, valid, inside the search space, faithful to their write-ups."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch

from cifar_search.errors import ConfigError
from cifar_search.search.space import (
    DEFAULT_SPACE,
    config_to_params,
    outside_space,
    suggest_config,
)
from cifar_search.train.config import TrainConfig
from cifar_search.train.models import create_model, model_cost
from cifar_search.train.presets import PRESETS, Preset, get_preset, list_presets

NAMES = list(PRESETS)
SEEDS = ["ensta-cnn", "shake-shake-26", "rdfia-alexnet", "resnet18", "resnet34", "resnet50",
         "davidnet", "era-custom-resnet", "fast94"]


def test_every_seed_write_up_is_a_preset() -> None:
    assert list_presets() == NAMES == SEEDS
    for name, preset in PRESETS.items():
        assert preset.name == name
        assert preset.source and preset.published and preset.notes


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'nope' \(known: ensta-cnn, .*fast94"):
        get_preset("nope")


def test_presets_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("davidnet").epochs = 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", NAMES)
def test_valid_and_serialisable(name: str) -> None:
    cfg = get_preset(name).config
    assert cfg.validate() is cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", NAMES)
def test_inside_the_default_space_and_replayed_exactly(name: str) -> None:
    cfg = get_preset(name).config
    params = config_to_params(cfg, DEFAULT_SPACE)
    assert outside_space(params, DEFAULT_SPACE) == []
    replay = suggest_config(optuna.trial.FixedTrial(params), DEFAULT_SPACE, epochs=cfg.epochs)
    assert replay == cfg.replace(early_stopping=0)  # the space has no early-stopping param


@pytest.mark.parametrize("name", NAMES)
def test_model_builds_and_classifies_one_image(name: str) -> None:
    cfg = get_preset(name).config.model
    torch.manual_seed(0)
    model = create_model(cfg).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 32, 32))
    assert logits.shape == (1, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("davidnet", 6_573_120),
        ("era-custom-resnet", 6_573_120),
        ("resnet18", 11_173_962),
        ("resnet34", 21_282_122),
        ("resnet50", 23_520_842),
        ("shake-shake-26", 11_653_978),  # Gastaldi: 11.7M
        ("rdfia-alexnet", 1_191_330),
        ("fast94", 1_972_792),
    ],
)
def test_parameter_counts(name: str, params: int) -> None:
    n, flops = model_cost(get_preset(name).config.model)
    assert n == params and flops > 0


def test_ensta_is_about_300k_parameters() -> None:
    n, _ = model_cost(get_preset("ensta-cnn").config.model)
    assert abs(n - 300_000) / 300_000 < 0.1


def test_ensta_recipe() -> None:
    c = get_preset("ensta-cnn").config
    assert (c.model.family, c.model.width, c.model.depth) == ("plain_cnn", 32, (2, 2, 2))
    assert c.model.batch_norm and c.model.dropout > 0
    assert (c.optim.optimizer, c.optim.lr, c.batch_size, c.epochs) == ("adam", 1e-3, 32, 125)
    assert c.optim.schedule == "multistep" and c.optim.gamma == 0.5
    assert [round(m * c.epochs) for m in c.optim.milestones] == [75, 100]
    assert (c.augment.crop_padding, c.augment.flip, c.augment.rotation) == (4, "random", 15.0)
    assert c.early_stopping > 0


def test_shake_shake_recipe() -> None:
    c = get_preset("shake-shake-26").config
    assert (c.model.family, c.model.width, c.model.depth) == ("shake_shake", 64, (4, 4, 4))
    assert (c.batch_size, c.epochs, c.optim.schedule) == (64, 1800, "cosine")
    assert (c.augment.cutout, c.augment.auto_augment) == (16, "autoaugment")


def test_rdfia_recipe() -> None:
    c = get_preset("rdfia-alexnet").config
    m = c.model
    assert (m.family, m.input_size, m.hidden, m.batch_norm) == ("alexnet", 28, 1000, True)
    assert m.dropout > 0
    assert m.mean == (0.491, 0.482, 0.447) and m.std == (0.202, 0.199, 0.201)
    assert (c.augment.crop_padding, c.augment.flip) == (0, "random")
    o = c.optim
    assert (o.optimizer, o.momentum, o.schedule, o.gamma) == ("sgd", 0.9, "exponential", 0.95)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_resnet_recipe(name: str) -> None:
    c = get_preset(name).config
    o = c.optim
    assert (o.optimizer, o.lr, o.momentum, o.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
    assert (o.schedule, c.epochs) == ("cosine", 200)
    assert (c.augment.crop_padding, c.augment.flip) == (4, "random")


def test_davidnet_recipe() -> None:
    c = get_preset("davidnet").config
    m, a, o = c.model, c.augment, c.optim
    assert (m.family, m.depth, m.head_scale) == ("resnet9", (1, 0, 1), 0.125)
    assert (c.batch_size, c.epochs) == (512, 20)
    assert (o.optimizer, o.nesterov, o.momentum, o.lr, o.weight_decay) == (
        "sgd", True, 0.9, 0.4, 5e-4)
    assert o.schedule == "cyclic"
    assert (a.crop_padding, a.flip, a.cutout) == (4, "random", 8) and a.mixup_alpha > 0


def test_era_recipe() -> None:
    c = get_preset("era-custom-resnet").config
    m, a, o = c.model, c.augment, c.optim
    assert (m.family, m.depth) == ("resnet9", (1, 0, 1)) and m.block_dropout > 0
    assert (o.optimizer, o.schedule, o.lr, o.pct_start, o.div_factor, o.anneal) == (
        "adam", "onecycle", 4.65e-2, 0.208, 2000.0, "linear")
    assert (c.batch_size, c.epochs) == (512, 24)
    assert a.flip == "random" and a.resized_crop_scale < 1 and a.cutout == 8


def test_fast94_recipe() -> None:
    c = get_preset("fast94").config
    m, a, o = c.model, c.augment, c.optim
    assert (m.family, m.activation, m.depth) == ("airbench", "gelu", (2, 2, 2))
    assert (c.batch_size, c.epochs, c.tta) == (1024, 10, "flip_translate")
    assert (o.optimizer, o.nesterov, o.momentum, o.label_smoothing) == ("sgd", True, 0.85, 0.2)
    assert o.lr == pytest.approx(11.5 / (1 + 1 / (1 - 0.85)))  # per 1024 on a summed loss
    assert (a.flip, a.crop_padding, a.padding_mode) == ("alternating", 2, "reflect")


def test_preset_type() -> None:
    p = get_preset("fast94")
    assert isinstance(p, Preset) and isinstance(p.config, TrainConfig)
