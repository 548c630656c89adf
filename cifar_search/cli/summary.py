"""``cifar-search summary``: a model's layers, parameters, mult-adds and forward FLOPs."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from cifar_search.cli._common import positive_int
from cifar_search.errors import ConfigError
from cifar_search.train.config import ModelConfig

EPILOG = """\
examples:
  cifar-search summary --list                          # the model families
  cifar-search summary --preset davidnet               # a preset's model
  cifar-search summary --family resnet --depth 3,4,6,3 --block bottleneck   # ResNet-50
  cifar-search summary --family wide_resnet --width 128 --depth 2,2,2       # WRN-16-8
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "summary", help="layers, parameters and FLOPs of a model", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", metavar="NAME", help="a preset's model (cifar-search presets)")
    which.add_argument("--family", metavar="NAME", help="a family's canonical model")
    which.add_argument("--list", action="store_true", help="list the model families")
    p.add_argument("--width", type=positive_int, help="model.width: channels of the first stage")
    p.add_argument("--depth", type=parse_depth, metavar="D1,D2,...",
                   help="model.depth: convs or blocks per stage, e.g. 2,2,2,2")
    p.add_argument("--block", choices=("basic", "bottleneck"), help="model.block (resnet)")
    p.add_argument("--no-batch-norm", action="store_true", help="model.batch_norm = false")
    p.add_argument("--max-depth", type=positive_int, default=3,
                   help="nesting depth of the layers listed (default: 3)")
    p.set_defaults(func=run)


def parse_depth(text: str) -> tuple[int, ...]:
    """``"2,2,2,2"`` (or ``"2-2-2-2"``) -> ``(2, 2, 2, 2)``."""
    try:
        depth = tuple(int(t) for t in text.replace("-", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers like 2,2,2,2, but got {text!r}"
        ) from None
    if any(d < 0 for d in depth):
        raise argparse.ArgumentTypeError(f"must be >= 0 in every stage, but got {text!r}")
    return depth


def model_config(args: argparse.Namespace) -> tuple[ModelConfig, str]:
    """The model to describe and its name: a preset's or a family's, then the overrides."""
    from cifar_search.train.models import default_config
    from cifar_search.train.presets import get_preset

    if args.preset:
        cfg, name = get_preset(args.preset).config.model, args.preset
    else:
        cfg, name = default_config(args.family), args.family
    changes: dict[str, Any] = {
        "width": args.width, "depth": args.depth, "block": args.block,
        "batch_norm": False if args.no_batch_norm else None,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
        name += " (" + ", ".join(f"{k}={v}" for k, v in changes.items()) + ")"
    return cfg, name


def run(args: argparse.Namespace) -> int:
    from cifar_search.train.models import create_model, summary

    if args.list:
        return list_families()
    cfg, name = model_config(args)
    model = create_model(cfg)
    print(f"{name}: {cfg}")
    print(summary(model, input_size=32, depth=args.max_depth))
    return 0


def list_families() -> int:
    """One line per family: its canonical member, its size and cost, and what it is."""
    from cifar_search.train.models import default_config, get_builder, model_cost

    print(f"{'family':<12} {'width':>5} {'depth':<10} {'params':>11} {'GFLOPs':>7}  description")
    for name in _families():
        cfg = default_config(name)
        doc = sys.modules[get_builder(name).__module__].__doc__ or ""
        first = doc.strip().splitlines()[0].split(": ", 1)[-1] if doc.strip() else ""
        depth = ",".join(map(str, cfg.depth))
        params, flops = model_cost(cfg)
        print(f"{name:<12} {cfg.width:>5} {depth:<10} {params:>11,} {flops / 1e9:>7.3f}  {first}")
    return 0


def _families() -> list[str]:
    from cifar_search.train.models import list_models

    names = list_models()
    if not names:
        raise ConfigError("no model family is registered.")
    return names
