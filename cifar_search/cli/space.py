"""``cifar-search space``: print the effective search space (default, or narrowed by a file)."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("space", help="print the effective search space")
    p.add_argument("--space", metavar="NAME|TOML",
                   help="a shipped space (small, tiny, default_space) or a TOML file")
    p.add_argument("--toml", action="store_true", help="print as a space file (TOML)")
    p.add_argument("--json", action="store_true", help="every param as a JSON record")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifar_search.search.space import UNSET
    from cifar_search.search.space_file import dump_space, load_space

    space = load_space(args.space)
    if args.toml:
        print(dump_space(space), end="")
        return 0
    rows: list[dict[str, str]] = []
    for p in space.params:
        if p.fixed is not UNSET:
            values = f"= {_short(p.fixed)} (fixed)"
        elif p.kind == "categorical":
            values = " | ".join(_short(c) for c in p.choices)
        else:
            values = f"{_short(p.low)} .. {_short(p.high)}{' (log)' if p.log else ''}"
        when = " and ".join(f"{k} in {'|'.join(map(_short, v))}" for k, v in p.when.items())
        rows.append({"param": p.name, "kind": p.kind, "values": values, "doc": p.doc,
                     "when": when})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{len(rows)} params ({args.space or 'the default space'}); 'if' names the params "
          "that switch one on")
    for r in rows:  # within 100 columns: the values wrap under themselves
        lines = textwrap.wrap(r["values"], 100 - 24) or [""]
        print(f"{r['param']:<22}  {lines[0]}")
        for more in lines[1:]:
            print(" " * 24 + more)
        note = r["doc"] + (f"; if {r['when']}" if r["when"] else "")
        for line in textwrap.wrap(note, 100 - 26):
            print(" " * 26 + line)
    for k, v in space.fixed_fields.items():
        print(f"{k:<22}  = {_short(v)} (fixed field)")
    return 0


def _short(value: object) -> str:
    """A value as a person reads it: 4 significant digits for floats (0.1111, 1e-05)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
