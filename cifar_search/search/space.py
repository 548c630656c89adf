"""The search space: one declarative table, and the one function that turns a trial into a config.

Nothing else in cifar-search calls ``trial.suggest_*``. Each :class:`Param` names the
:class:`~cifar_search.train.config.TrainConfig` field it sets (``target``, a dotted path), its
distribution, and the condition under which it applies (``when``: other params' values).
On/off techniques are modelled as a boolean *gate* (no target) plus a strength param that
applies only when the gate is on; the field keeps its "off" value otherwise.

:func:`config_to_params` is the inverse: the Optuna params that reproduce a config (used to
enqueue presets and to check that every preset is expressible in the space).

The default space is :data:`DEFAULT_SPACE`; the shipped space ``default_space``
(``cifar_search/search/spaces/default_space.toml``) is the same space as a readable file
(``cifar-search space --toml`` writes it), and a TOML file of the same form can narrow or fix
any part (see :mod:`cifar_search.search.space_file`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cifar_search.errors import ConfigError
from cifar_search.search.params import NORMALIZATIONS, UNSET, Param, Space, TrialLike
from cifar_search.search.space_default import DEFAULT_SPACE
from cifar_search.train.config import TrainConfig


def suggest_config(
    trial: TrialLike, space: Space, *, epochs: int, base: TrainConfig | None = None
) -> TrainConfig:
    """Sample (or replay, with ``FixedTrial``) one configuration. The only ``suggest_*`` caller.

    Args:
        trial: an ``optuna.Trial`` or ``optuna.trial.FixedTrial``.
        space: the search space.
        epochs: the full epoch budget of the trial (schedules span it).
        base: values of the fields no active param sets (default: ``TrainConfig()``).
    """
    fields = _flatten((base or TrainConfig()).to_dict())
    fields.update(space.fixed_fields)
    values: dict[str, Any] = {}
    for p in space.params:
        if not p.active(values):
            continue
        value = p.suggest(trial)
        values[p.name] = value
        if p.target is None:
            continue
        decoded = p.decode(value, fields)
        if isinstance(decoded, dict):
            fields.update(decoded)
        else:
            fields[p.target] = decoded
    for p in space.params:  # gates that are off leave their field at its "off" value
        if p.gate_field is not None and values.get(p.name) is False:
            fields[p.gate_field] = p.gate_off
    fields["epochs"] = epochs
    return TrainConfig.from_dict(_unflatten(fields)).validate()


def config_to_params(cfg: TrainConfig, space: Space, *, fixed: bool = False) -> dict[str, Any]:
    """The params that make :func:`suggest_config` rebuild ``cfg``. Fixed params are left out,
    unless ``fixed``: then they hold ``cfg``'s own values, so that :func:`outside_space` names
    where ``cfg`` differs from what the space fixes."""
    fields = _flatten(cfg.to_dict())
    values: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for p in space.params:
        if not p.active(values):
            continue
        if p.fixed is not UNSET and not fixed:
            values[p.name] = p.fixed
            continue
        if p.gate_field is not None:
            off = p.gate_off
            value: Any = not _equal(fields[p.gate_field], off)
        else:
            value = p.encode(fields)
        values[p.name] = out[p.name] = value
    return out


def rebuild_in(cfg: TrainConfig, space: Space) -> TrainConfig:
    """``cfg`` as ``space`` rebuilds it from its params (fields the space has no param for
    take their defaults); a config outside the space is a :class:`ConfigError` naming why."""
    import optuna  # only here: the rest of this module needs no Optuna

    params = config_to_params(cfg, space)
    bad = outside_space(params, space)
    if bad:
        raise ConfigError(f"a candidate is outside the search space: {bad[0]}.")
    return suggest_config(optuna.trial.FixedTrial(params), space, epochs=cfg.epochs)


def outside_space(params: Mapping[str, Any], space: Space) -> list[str]:
    """Human-readable reasons why ``params`` cannot be sampled from ``space`` (empty: fine)."""
    problems = []
    for name, value in params.items():
        p = space.get(name)
        if not p.contains(value):
            where = list(p.choices) if p.kind == "categorical" else f"[{p.low}, {p.high}]"
            problems.append(f"{name}={value!r} is not in {where}")
    for p in space.params:
        if p.fixed is not UNSET and p.name in params and params[p.name] != p.fixed:
            problems.append(f"{p.name}={params[p.name]!r} but the space fixes it to {p.fixed!r}")
    return problems


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def _unflatten(fields: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in fields.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def flatten_config(cfg: TrainConfig) -> dict[str, Any]:
    """``{"model.width": 64, ...}``: the dotted field names the space and space files use."""
    return _flatten(cfg.to_dict())


__all__ = [
    "DEFAULT_SPACE",
    "NORMALIZATIONS",
    "UNSET",
    "Param",
    "Space",
    "TrialLike",
    "config_to_params",
    "flatten_config",
    "outside_space",
    "rebuild_in",
    "suggest_config",
]
