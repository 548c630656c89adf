"""``cifar-search presets``: the named configurations, and one of them as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EPILOG = """\
examples:
  cifar-search presets                        # name, family, size, budget, source, result
  cifar-search presets show davidnet          # the full TrainConfig as JSON
  cifar-search presets show fast94 > f.json   # edit, then: cifar-search train --config f.json
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "presets", help="list the presets, or show one as JSON", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run, action=None)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print a preset's config as JSON (notes on stderr)")
    show.add_argument("name", help="preset name")
    show.set_defaults(func=run_show)


def run(args: argparse.Namespace) -> int:
    from cifar_search.models import model_cost
    from cifar_search.presets import PRESETS

    rows = []
    for p in PRESETS.values():
        params, flops = model_cost(p.config.model)
        rows.append((
            p.name, p.config.model.family, f"{params / 1e6:.2f}M", f"{flops / 1e9:.3f}",
            str(p.config.epochs), str(p.config.batch_size), p.source, p.published,
        ))
    head = ("name", "family", "params", "GFLOPs", "epochs", "batch", "source", "published")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]
    for row in [head, *rows]:
        cells = [row[i].ljust(w) if i < 2 else row[i].rjust(w) for i, w in enumerate(widths)]
        print("  ".join(cells) + f"  {row[6]}  |  {row[7]}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from cifar_search.presets import get_preset

    preset = get_preset(args.name)
    print(f"# {preset.name}: {preset.source}; published: {preset.published}", file=sys.stderr)
    print(f"# {preset.notes}", file=sys.stderr)
    print(json.dumps(preset.config.to_dict(), indent=2))
    return 0
