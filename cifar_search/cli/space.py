"""``cifar-search space``: print the effective search space (default, or narrowed by a file)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("space", help="print the effective search space")
    p.add_argument("--space", metavar="TOML", help="a space file narrowing the default")
    p.add_argument("--toml", action="store_true", help="print as a space file (TOML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifar_search.search_space import UNSET
    from cifar_search.space_file import dump_space, load_space

    space = load_space(args.space)
    if args.toml:
        print(dump_space(space), end="")
        return 0
    for p in space.params:
        if p.fixed is not UNSET:
            dist = f"= {p.fixed!r} (fixed)"
        elif p.kind == "categorical":
            dist = "{" + ", ".join(map(str, p.choices)) + "}"
        else:
            dist = f"[{p.low:g}, {p.high:g}]{' log' if p.log else ''}"
        when = " and ".join(f"{k} in {list(v)}" for k, v in p.when.items())
        cond = f" if {when}" if p.when else ""
        print(f"{p.name:<22} {dist:<58} {p.doc}{cond}")
    for k, v in space.fixed_fields.items():
        print(f"{k:<22} = {v!r} (fixed field)")
    return 0
