from __future__ import annotations

import pytest

from cifar_search.errors import ConfigError
from cifar_search.train.config import ModelConfig, TrainConfig


def test_round_trip_through_plain_dict() -> None:
    cfg = TrainConfig(model=ModelConfig(family="resnet", depth=(2, 2, 2, 2), width=32))
    data = cfg.to_dict()
    assert data["model"]["depth"] == [2, 2, 2, 2]
    assert TrainConfig.from_dict(data) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": {"famly": "x"}}, "unknown key model.famly"),
        ({"epochs": "ten"}, "epochs must be an integer"),
        ({"optim": {"schedule": "warp"}}, "optim.schedule must be one of"),
        ({"model": {"batch_norm": 1}}, "model.batch_norm must be true or false"),
        ({"model": {"mean": [0.5, 0.5]}}, "model.mean must have 3 items"),
        ({"augment": 3}, "augment must be a table"),
    ],
)
def test_from_dict_names_the_bad_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 0}, "batch_size"),
        ({"ema_decay": 1.0}, "ema_decay"),
    ],
)
def test_validate_names_the_bad_value(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


def test_validate_checks_sections() -> None:
    bad = TrainConfig.from_dict({"model": {"dropout": 1.5}})
    with pytest.raises(ConfigError, match=r"model\.dropout"):
        bad.validate()
    bad = TrainConfig.from_dict({"optim": {"milestones": [0.5, 1.5]}})
    with pytest.raises(ConfigError, match="milestones"):
        bad.validate()
