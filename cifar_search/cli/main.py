"""Entry point: ``cifar-search <command>``. The only place that prints errors and picks exit codes.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a parser
whose ``func(args) -> int`` runs the command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from cifar_search.errors import CifarSearchError

# module name under cifar_search.cli, in the order `--help` lists them
COMMANDS: tuple[str, ...] = (
    "auto",
    "run",
    "status",
    "studies",
    "delete_study",
    "trials",
    "best",
    "space",
    "dashboard",
    "train",
    "retrain",
    "predict",
    "report",
    "lr_find",
    "summary",
    "presets",
    "env",
)

EPILOG = """\
examples:
  cifar-search auto --time 10m                  # a tested, exported model in 10 minutes
  cifar-search run --trials 200                 # search; resumable; SQLite under studies/
  cifar-search run --budget smoke --trials 5    # a minute on a laptop CPU
  cifar-search status                           # counts, best so far, time spent
  cifar-search dashboard                        # optuna-dashboard on the study
  cifar-search retrain best                     # full retrain, test accuracy, exports
  cifar-search train --preset davidnet --out runs/davidnet
"""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors on one line (the full usage stays one ``--help`` away), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from cifar_search import __version__

    parser = OneLineParser(
        prog="cifar-search",
        description="Find the best CIFAR-10 classifier a compute budget can buy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cifar-search {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser
    )
    for name in COMMANDS:
        module = importlib.import_module(f"cifar_search.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except CifarSearchError as exc:
        print(f"cifar-search {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a safety net: paths are checked, and converted, where they are used
        if exc.filename is None:
            raise
        print(f"cifar-search {args.command}: error: {exc.filename}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cifar-search {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cifar-search space | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
