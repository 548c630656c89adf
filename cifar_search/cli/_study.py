"""Loading the study named on the command line (read-only commands)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # --help must not import optuna (see tests/test_cli_help.py)
    import optuna


def storage_url(args: argparse.Namespace) -> str:
    from cifar_search.search.storage import default_url

    return args.storage or default_url(args.study)


def load(args: argparse.Namespace) -> optuna.Study:
    import optuna

    from cifar_search.search.storage import load_existing_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return load_existing_study(storage_url(args), args.study)
