"""Space files: TOML that narrows or fixes parts of the default space.

    # a space file (cifar_search/search/spaces/small.toml is a shipped one)
    [params.family]
    choices = ["resnet9", "airbench"]     # a subset of the default choices

    [params.lr_sgd]
    low = 0.05                            # a range inside the default one
    high = 5.0

    [params.tta]
    value = "flip"                        # fixed: no longer searched

    [fixed]
    "model.activation" = "gelu"          # any TrainConfig field no active param sets

``cifar_search/search/spaces/default_space.toml`` is the whole default space in this form.
Every mistake (unknown key, empty range, wrong type, a choice the default space lacks) is a
:class:`ConfigError` that names the key, raised before anything runs.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cifar_search.errors import ConfigError
from cifar_search.names import path_error
from cifar_search.search.space import (
    DEFAULT_SPACE,
    UNSET,
    Param,
    Space,
    _unflatten,
    flatten_config,
)
from cifar_search.train.config import TrainConfig

_PARAM_KEYS = {"low", "high", "log", "choices", "value", "doc", "kind", "target", "when"}
_INFO_KEYS = {"doc", "kind", "target", "when"}  # written for reading; must match if given


SPACES_DIR = Path(__file__).parent / "spaces"  # the shipped space files (package data)


def shipped_spaces() -> list[str]:
    """Names of the shipped space files: ``--space small`` reads ``spaces/small.toml``."""
    return sorted(f.stem for f in SPACES_DIR.glob("*.toml"))


def space_path(name_or_path: str | Path) -> Path:
    """A shipped space by name (``small``, ``tiny``, ``default_space``), else the path given.

    Raises:
        ConfigError: a bare name (no folder, no ``.toml``) that is neither a file here nor a
            shipped space; the message lists the shipped ones.
    """
    text = str(name_or_path)
    if "/" in text or "\\" in text or text.endswith(".toml") or Path(text).exists():
        return Path(text)
    if text in shipped_spaces():
        return SPACES_DIR / f"{text}.toml"
    raise ConfigError(f"unknown space {text!r}: give a TOML file, or a shipped space "
                      f"({', '.join(shipped_spaces())}).")


def load_space(path: str | Path | None, base: Space = DEFAULT_SPACE) -> Space:
    """The default space, narrowed by a space file: a path, or a shipped space's name (None:
    the default)."""
    if path is None:
        return base
    file = space_path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"space file {file} does not exist.") from None
    except OSError as exc:  # a folder, no permission...: one line naming the file
        raise path_error("space file", file, exc) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"space file {file} is not valid TOML: {exc}.") from None
    try:
        return apply_overrides(base, data)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def apply_overrides(space: Space, data: Mapping[str, Any]) -> Space:
    unknown = sorted(set(data) - {"params", "fixed"})
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r} (known: params, fixed).")
    params = {p.name: p for p in space.params}
    for name, table in dict(data.get("params", {})).items():
        if name not in params:
            raise ConfigError(f"unknown param {name!r} (known: {', '.join(params)}).")
        if not isinstance(table, Mapping):
            raise ConfigError(f"params.{name} must be a table, but got {table!r}.")
        params[name] = _narrow(params[name], table)
    fixed = dict(space.fixed_fields)
    fixed.update(_fixed_fields(data.get("fixed", {}), params.values()))
    return dataclasses.replace(space, params=tuple(params.values()), fixed_fields=fixed)


def _narrow(p: Param, table: Mapping[str, Any]) -> Param:
    key = f"params.{p.name}"
    unknown = sorted(set(table) - _PARAM_KEYS)
    if unknown:
        known = ", ".join(sorted(_PARAM_KEYS))
        raise ConfigError(f"unknown key {key}.{unknown[0]} (known: {known}).")
    for info in _INFO_KEYS & set(table) - {"doc"}:
        mine = _info(p)[info]
        given = table[info]
        if isinstance(given, Mapping):
            given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
        if given != mine:
            raise ConfigError(f"{key}.{info} cannot be changed (it is {mine!r}).")
    changes: dict[str, Any] = {}
    if "value" in table:
        if set(table) & {"low", "high", "choices"}:
            raise ConfigError(f"{key}: give either value or a range/choices, not both.")
        if not p.contains(table["value"]):
            raise ConfigError(f"{key}.value={table['value']!r} is outside the default space "
                              f"({_where(p)}).")
        return dataclasses.replace(p, fixed=table["value"])
    if p.kind == "categorical":
        if set(table) & {"low", "high", "log"}:
            raise ConfigError(f"{key} is categorical: use choices or value, not low/high.")
        if "choices" in table:
            choices = table["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{key}.choices must be a non-empty list, got {choices!r}.")
            bad = [c for c in choices if c not in p.choices]
            if bad:
                raise ConfigError(f"{key}.choices has {bad[0]!r}, not in {list(p.choices)}.")
            changes["choices"] = tuple(choices)
        return dataclasses.replace(p, **changes)
    if "choices" in table:
        raise ConfigError(f"{key} is numeric: use low/high or value, not choices.")
    for bound in ("low", "high"):
        if bound in table:
            v = table[bound]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{key}.{bound} must be a number, but got {v!r}.")
            if p.kind == "int" and not float(v).is_integer():
                raise ConfigError(f"{key}.{bound} must be an integer, but got {v!r}.")
            if not p.contains(v):
                raise ConfigError(f"{key}.{bound}={v!r} is outside the default range {_where(p)}.")
            changes[bound] = v
    if "log" in table:
        if not isinstance(table["log"], bool):
            raise ConfigError(f"{key}.log must be true or false, got {table['log']!r}.")
        changes["log"] = table["log"]
    low, high = changes.get("low", p.low), changes.get("high", p.high)
    if low >= high:  # type: ignore[operator]
        raise ConfigError(f"{key}: empty range, low={low!r} >= high={high!r}.")
    if changes.get("log", p.log) and low <= 0:  # type: ignore[operator]
        raise ConfigError(f"{key}: a log range needs low > 0, but got low={low!r}.")
    return dataclasses.replace(p, **changes)


def _fixed_fields(table: Any, params: Any) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"fixed must be a table of dotted config fields, got {table!r}.")
    known = flatten_config(TrainConfig())
    targets = {p.target: p.name for p in params if p.target} | {
        p.gate_field: p.name for p in params if p.gate_field
    }
    for dotted in table:
        if dotted not in known:
            raise ConfigError(f"unknown config field fixed.{dotted!r} (e.g. 'model.activation').")
        if dotted in targets:
            raise ConfigError(f"fixed.{dotted} is set by param {targets[dotted]!r}: fix it with "
                              f"[params.{targets[dotted]}] value = ... instead.")
        if dotted == "epochs":
            raise ConfigError("fixed.epochs: the epoch budget comes from --budget / --epochs.")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    TrainConfig.from_dict(_unflatten({**known, **fixed})).validate()  # types and ranges
    return fixed


def _where(p: Param) -> str:
    return str(list(p.choices)) if p.kind == "categorical" else f"[{p.low}, {p.high}]"


def _info(p: Param) -> dict[str, Any]:
    return {"kind": p.kind, "target": p.target or p.gate_field, "when": dict(p.when),
            "doc": p.doc}


def dump_space(space: Space) -> str:
    """The space as a TOML file that :func:`load_space` reads back to the same space."""
    lines = [
        "# cifar-search search space. Narrow or fix any param, then:",
        "#   cifar-search run --space this-file.toml",
        "# low/high/choices may only narrow the default; `value = X` fixes a param.",
        "# kind/target/when/doc are for reading (they cannot be changed here).",
        "",
    ]
    for p in space.params:
        lines.append(f"[params.{p.name}]")
        lines.append(f"doc = {_toml(p.doc)}")
        lines.append(f"kind = {_toml(p.kind)}")
        lines.append(f"target = {_toml(p.target or p.gate_field)}")
        if p.when:
            inner = ", ".join(f"{k} = {_toml(list(v))}" for k, v in p.when.items())
            lines.append(f"when = {{ {inner} }}")
        if p.fixed is not UNSET:
            lines.append(f"value = {_toml(p.fixed)}")
        elif p.kind == "categorical":
            lines.append(f"choices = {_toml(list(p.choices))}")
        else:
            lines.append(f"low = {_toml(p.low)}")
            lines.append(f"high = {_toml(p.high)}")
            if p.log:
                lines.append("log = true")
        lines.append("")
    if space.fixed_fields:
        lines.append("[fixed]")
        lines += [f'"{k}" = {_toml(v)}' for k, v in space.fixed_fields.items()]
        lines.append("")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if value is None:
        return '""'
    raise ConfigError(f"cannot write {value!r} to TOML.")
