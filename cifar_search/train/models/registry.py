"""The model registry (timm style): ``@register_model("name")`` on a builder, ``create_model``.

A builder takes a :class:`~cifar_search.train.config.ModelConfig` and returns the network that sees
normalised images; :func:`create_model` validates the config, builds the network and puts the
:class:`~cifar_search.train.models.common.Preprocess` layer in front of it.

Example:
    >>> import torch
    >>> from cifar_search.train.config import ModelConfig
    >>> from cifar_search.train.models import create_model
    >>> model = create_model(ModelConfig(family="resnet9", depth=(1, 0, 1)))
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from cifar_search.errors import ConfigError
from cifar_search.train.config import ModelConfig, TrainConfig
from cifar_search.train.models.common import Classifier, DataInitClassifier, Preprocess, check

Builder = Callable[[ModelConfig], nn.Module]

_BUILDERS: dict[str, Builder] = {}
_DEFAULTS: dict[str, dict[str, Any]] = {}


def register_model(name: str, **defaults: Any) -> Callable[[Builder], Builder]:
    """Register a builder under ``name``.

    Args:
        name: The ``ModelConfig.family`` value that selects it.
        **defaults: ``ModelConfig`` fields of the family's canonical member (what
            :func:`default_config` returns, e.g. ``depth=(2, 2, 2, 2)`` for ResNet-18).
    """
    unknown = sorted(set(defaults) - {f.name for f in dataclasses.fields(ModelConfig)})
    if unknown:
        raise ConfigError(f"register_model({name!r}): unknown ModelConfig field {unknown[0]!r}.")

    def wrap(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ConfigError(f"model family {name!r} is registered twice.")
        _BUILDERS[name] = builder
        _DEFAULTS[name] = dict(defaults)
        return builder

    return wrap


def list_models() -> list[str]:
    """The registered family names, sorted."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Builder:
    """The builder of family ``name``; an unknown name lists the known ones."""
    if name not in _BUILDERS:
        raise ConfigError(
            f"unknown model family {name!r} (known: {', '.join(list_models())})."
        )
    return _BUILDERS[name]


def default_config(name: str) -> ModelConfig:
    """The canonical member of family ``name`` (its registered defaults over ``ModelConfig``)."""
    get_builder(name)
    return ModelConfig(family=name, **_DEFAULTS[name])


def validate_model_config(cfg: ModelConfig) -> ModelConfig:
    """Range checks of the model section (those of ``TrainConfig.validate`` and a few more)."""
    get_builder(cfg.family)
    TrainConfig(model=cfg).validate()
    check(cfg.num_classes >= 1, f"model.num_classes must be >= 1, but got {cfg.num_classes=}.")
    check(cfg.head_scale > 0, f"model.head_scale must be > 0, but got {cfg.head_scale=}.")
    check(cfg.hidden >= 0, f"model.hidden must be >= 0, but got {cfg.hidden=}.")
    check(
        0 < cfg.bn_momentum <= 1, f"model.bn_momentum must be in (0, 1], got {cfg.bn_momentum=}."
    )
    return cfg


def create_model(cfg: ModelConfig) -> nn.Module:
    """Build family ``cfg.family``: float [0, 1] images ``(B, 3, 32, 32)`` -> logits ``(B, C)``.

    The result is a :class:`~cifar_search.train.models.common.Classifier` (``.preprocess``,
    ``.net``, and ``set_epoch``, which the trainer calls before every epoch); when the network
    initialises itself from data (airbench), the model also has ``init_from_data(images)``,
    which the trainer calls before training.

    Raises:
        ConfigError: unknown family, or a field out of range for it (the message names it).
    """
    builder = get_builder(cfg.family)
    validate_model_config(cfg)
    net = builder(cfg)
    cls = DataInitClassifier if callable(getattr(net, "init_from_data", None)) else Classifier
    return cls(Preprocess.from_config(cfg), net)
