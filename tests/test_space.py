from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest

from cifar_search.errors import ConfigError
from cifar_search.search.space import (
    DEFAULT_SPACE,
    Param,
    Space,
    config_to_params,
    outside_space,
    suggest_config,
)
from cifar_search.train.config import TrainConfig

PACKAGE = Path(__file__).resolve().parents[1] / "cifar_search"


def test_sampled_configs_are_valid_and_replay_exactly() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    families = set()
    for _ in range(300):
        trial = study.ask()
        cfg = suggest_config(trial, DEFAULT_SPACE, epochs=7)
        assert cfg.epochs == 7
        families.add(cfg.model.family)
        params = config_to_params(cfg, DEFAULT_SPACE)
        assert params == trial.params  # the inverse recovers exactly what was sampled
        replay = suggest_config(optuna.trial.FixedTrial(params), DEFAULT_SPACE, epochs=7)
        assert replay == cfg
        assert outside_space(params, DEFAULT_SPACE) == []
        study.tell(trial, 0.0)
    assert len(families) == len(DEFAULT_SPACE.get("family").choices)


def test_conditional_params_only_where_they_apply() -> None:
    params = {"family": "alexnet", "optimizer": "adam", "schedule": "cosine", "hidden": 1000,
              "input_size": 28, "lr_adam": 1e-3}
    trial = optuna.trial.FixedTrial({**_defaults(), **params})
    suggest_config(trial, DEFAULT_SPACE, epochs=3)
    asked = set(trial.params)
    assert "depth_resnet" not in asked and "lr_sgd" not in asked and "nesterov" not in asked
    assert {"lr_adam", "hidden", "input_size"} <= asked
    assert "milestones" not in asked and "pct_start" not in asked


def test_off_gates_leave_the_field_off() -> None:
    trial = optuna.trial.FixedTrial({**_defaults(), "use_mixup": False, "use_cutout": True,
                                     "cutout": 8})
    cfg = suggest_config(trial, DEFAULT_SPACE, epochs=3)
    assert cfg.augment.mixup_alpha == 0.0 and cfg.augment.cutout == 8
    assert "mixup_alpha" not in trial.params


def test_sgd_learning_rate_is_per_1024_examples() -> None:
    for batch in (128, 512):
        trial = optuna.trial.FixedTrial({**_defaults(), "optimizer": "sgd", "batch_size": batch,
                                         "lr_sgd": 0.8})
        cfg = suggest_config(trial, DEFAULT_SPACE, epochs=3)
        assert cfg.optim.lr == pytest.approx(0.8 * batch / 1024)


def test_space_rejects_bad_definitions() -> None:
    p = Param("a", "categorical", "model.family", choices=("resnet",))
    with pytest.raises(ConfigError, match="defined twice"):
        Space(params=(p, p))
    q = Param("b", "float", "model.dropout", low=0, high=0.5, when={"later": (True,)})
    with pytest.raises(ConfigError, match="depends on 'later'"):
        Space(params=(q,))
    with pytest.raises(ConfigError, match="unknown param 'nope'"):
        DEFAULT_SPACE.get("nope")


def test_outside_space_names_the_param() -> None:
    params = config_to_params(TrainConfig(), DEFAULT_SPACE)
    params["width"] = 1000
    assert any("width=1000" in p for p in outside_space(params, DEFAULT_SPACE))


def test_only_the_search_space_calls_suggest() -> None:
    """One declarative space: nothing but ``Param.suggest`` (search/params.py, called by
    ``suggest_config`` alone) asks the trial for values."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() == "search/params.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("suggest_")
                    and node.attr != "suggest_config"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def _defaults() -> dict[str, object]:
    """Params of the default TrainConfig (a complete, valid assignment to start from)."""
    return config_to_params(TrainConfig(), DEFAULT_SPACE)
