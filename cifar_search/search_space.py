"""The search space: one declarative table, and the one function that turns a trial into a config.

Nothing else in cifar-search calls ``trial.suggest_*``. Each :class:`Param` names the
:class:`~cifar_search.config.TrainConfig` field it sets (``target``, a dotted path), its
distribution, and the condition under which it applies (``when``: other params' values).
On/off techniques are modelled as a boolean *gate* (no target) plus a strength param that
applies only when the gate is on; the field keeps its "off" value otherwise.

:func:`config_to_params` is the inverse: the Optuna params that reproduce a config (used to
enqueue presets and to check that every preset is expressible in the space).

The default space is :data:`DEFAULT_SPACE`; the shipped space ``default_space``
(``cifar_search/spaces/default_space.toml``) is the same space as a readable file
(``cifar-search space --toml`` writes it), and a TOML file of the same form can narrow or fix
any part (see :mod:`cifar_search.space_file`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cifar_search.config import TrainConfig
from cifar_search.errors import ConfigError

Kind = Literal["float", "int", "categorical"]
Codec = Literal["plain", "tuple", "per_1024", "normalization"]

# Normalisation constants by name (RDFIA TME 5-6 uses its own rounded statistics).
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": (TrainConfig().model.mean, TrainConfig().model.std),
    "rdfia": ((0.491, 0.482, 0.447), (0.202, 0.199, 0.201)),
}

UNSET: Any = object()  # marker: the param is sampled, not fixed


class TrialLike(Protocol):
    """What :func:`suggest_config` needs of a trial: ``optuna.Trial`` and ``FixedTrial`` fit."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = ...) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = ...) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Param:
    """One searchable dimension."""

    name: str  # Optuna parameter name
    kind: Kind
    target: str | None = None  # dotted TrainConfig field; None for a gate
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # all must hold
    gate_off: Any = UNSET  # for a gate: the target field's value meaning "off" ...
    gate_field: str | None = None  # ... and that field
    codec: Codec = "plain"  # how the sampled value maps to the field
    fixed: Any = UNSET  # set by a space file: the value used without sampling
    doc: str = ""

    def active(self, values: Mapping[str, Any]) -> bool:
        return all(values.get(k, UNSET) in allowed for k, allowed in self.when.items())

    def suggest(self, trial: TrialLike) -> Any:
        if self.fixed is not UNSET:
            return self.fixed
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)  # type: ignore[arg-type]
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        assert self.low is not None and self.high is not None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        eps = 1e-9 * max(abs(self.low), abs(self.high), 1.0)
        return self.low - eps <= value <= self.high + eps

    def decode(self, value: Any, fields: Mapping[str, Any]) -> Any:
        if self.codec == "tuple":
            return tuple(_number(v) for v in str(value).split("-")) if value != "" else ()
        if self.codec == "per_1024":  # learning rate per 1024 examples (linear scaling rule)
            return value * fields["batch_size"] / 1024
        if self.codec == "normalization":
            mean, std = NORMALIZATIONS[value]
            return {"model.mean": mean, "model.std": std}
        return value

    def encode(self, fields: Mapping[str, Any]) -> Any:
        assert self.target is not None
        if self.codec == "normalization":
            now = (tuple(fields["model.mean"]), tuple(fields["model.std"]))
            for name, pair in NORMALIZATIONS.items():
                if all(_close_seq(a, b) for a, b in zip(now, pair, strict=True)):
                    return name
            return f"custom{now}"
        value = fields[self.target]
        if self.codec == "tuple":
            return "-".join(_fmt(v) for v in value)
        if self.codec == "per_1024":
            return value * 1024 / fields["batch_size"]
        if self.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def _fmt(v: float) -> str:
    return str(v)


def _close_seq(a: Any, b: Any) -> bool:
    if len(a) != len(b):
        return False
    return all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Space:
    """An ordered tuple of params (a param's conditions only name params before it)."""

    params: tuple[Param, ...]
    fixed_fields: Mapping[str, Any] = field(default_factory=dict)  # dotted field -> value

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for p in self.params:
            if p.name in seen:
                raise ConfigError(f"param {p.name!r} is defined twice in the space.")
            unknown = [k for k in p.when if k not in seen]
            if unknown:
                raise ConfigError(f"param {p.name!r} depends on {unknown[0]!r}, defined later.")
            seen.add(p.name)

    def get(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ConfigError(f"unknown param {name!r} (known: {', '.join(self.names())}).")

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def replace_param(self, name: str, **changes: Any) -> Space:
        params = tuple(dataclasses.replace(p, **changes) if p.name == name else p
                       for p in self.params)
        self.get(name)
        return dataclasses.replace(self, params=params)


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


def __getattr__(name: str) -> Any:
    # The default space is data in its own module, which imports Param/Space from here;
    # resolving it lazily keeps either import order working.
    if name == "DEFAULT_SPACE":
        from cifar_search.space_default import DEFAULT_SPACE

        return DEFAULT_SPACE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_SPACE",  # noqa: F822 (served lazily by the module __getattr__ above)
    "NORMALIZATIONS",
    "Param",
    "Space",
    "config_to_params",
    "flatten_config",
    "outside_space",
    "suggest_config",
]
