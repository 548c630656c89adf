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
    p.add_argument("--json", action="store_true", help="every preset as a JSON record")
    p.set_defaults(func=run, action=None)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print a preset's config as JSON (notes on stderr)")
    show.add_argument("name", help="preset name")
    show.set_defaults(func=run_show)


def run(args: argparse.Namespace) -> int:
    from cifar_search.train.models import model_cost
    from cifar_search.train.presets import PRESETS

    records: list[dict[str, Any]] = []
    for p in PRESETS.values():
        params, flops = model_cost(p.config.model)
        records.append({"name": p.name, "family": p.config.model.family, "params": params,
                        "flops": flops, "epochs": p.config.epochs,
                        "batch_size": p.config.batch_size, "source": p.source,
                        "published": p.published})
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    head = ("name", "family", "params", "GFLOPs", "epochs", "batch", "published")
    rows = [(r["name"], r["family"], f"{r['params'] / 1e6:.2f}M", f"{r['flops'] / 1e9:.3f}",
             str(r["epochs"]), str(r["batch_size"]), r["published"]) for r in records]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(6)]
    room = 100 - sum(widths) - 2 * 6
    for row in [head, *rows]:
        cells = [row[i].ljust(w) if i < 2 else row[i].rjust(w) for i, w in enumerate(widths)]
        published = row[6] if len(row[6]) <= room else row[6][: room - 3] + "..."
        print("  ".join(cells) + "  " + published)
    print("sources and notes: cifar-search presets show NAME, or --json")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from cifar_search.train.presets import get_preset

    preset = get_preset(args.name)
    print(f"# {preset.name}: {preset.source}; published: {preset.published}", file=sys.stderr)
    print(f"# {preset.notes}", file=sys.stderr)
    print(json.dumps(preset.config.to_dict(), indent=2))
    return 0
