"""The pieces a search space is made of: :class:`Param` (one searchable dimension) and
:class:`Space` (a table of them). The default space is data built from these
(:mod:`.space_default`); :mod:`.space` turns a trial into a config over any space."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cifar_search.errors import ConfigError
from cifar_search.train.config import TrainConfig

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
            return "-".join(str(v) for v in value)
        if self.codec == "per_1024":
            return value * 1024 / fields["batch_size"]
        if self.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


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
