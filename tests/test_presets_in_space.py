"""Every seed write-up is expressible in the default search space and can warm-start a study."""

from __future__ import annotations

import math

import optuna
import pytest

from cifar_search.search.space import (
    DEFAULT_SPACE,
    config_to_params,
    flatten_config,
    outside_space,
    suggest_config,
)
from cifar_search.train.presets import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_replays_exactly_through_fixed_trial(name: str) -> None:
    cfg = PRESETS[name].config
    params = config_to_params(cfg, DEFAULT_SPACE)
    assert outside_space(params, DEFAULT_SPACE) == []
    replay = suggest_config(optuna.trial.FixedTrial(params), DEFAULT_SPACE, epochs=cfg.epochs)
    # early stopping is a train/retrain option, not a searched one (the pruner plays that role)
    want = flatten_config(cfg)
    got = flatten_config(replay.replace(early_stopping=cfg.early_stopping))
    for key, value in want.items():
        if isinstance(value, float):
            assert math.isclose(got[key], value, rel_tol=1e-9), key
        else:
            assert got[key] == value, key


def test_presets_enqueue_into_a_study() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for preset in PRESETS.values():
        study.enqueue_trial(config_to_params(preset.config, DEFAULT_SPACE))
    for preset in PRESETS.values():
        trial = study.ask()
        cfg = suggest_config(trial, DEFAULT_SPACE, epochs=5)
        assert cfg.model == preset.config.model
        assert cfg.augment == preset.config.augment
        study.tell(trial, 0.0)
