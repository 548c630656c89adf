"""Options shared by several subcommands, so they mean the same everywhere."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, with an error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, but got {value}")
    return value


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="CIFAR-10: a cifar10.npz, a cifar-10-batches-py/ folder or a folder holding either "
        "(default: $CIFAR_SEARCH_DATA, else ~/.cache/cifar-search; downloaded there if online)",
    )


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:i (default: auto)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="autocast dtype (auto: bf16 on CUDA and on CPUs with bf16 units, else fp32)",
    )


def add_study_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", default="cifar", help="study name (default: cifar)")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: sqlite:///studies/<study>.db); "
        "postgresql://user:pass@host/db for many machines",
    )
