"""Loading the study named on the command line (read-only commands)."""

from __future__ import annotations

import argparse

import optuna

from cifar_search.storage import default_url, load_existing_study


def storage_url(args: argparse.Namespace) -> str:
    return args.storage or default_url(args.study)


def load(args: argparse.Namespace) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return load_existing_study(storage_url(args), args.study)
