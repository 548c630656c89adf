"""Options shared by several subcommands, so they mean the same everywhere."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_SEED = 2**31 - 1  # numpy and the samplers take seeds below 2**32; seed + trials must fit
MIN_TRAIN_SUBSET = 10  # images: at least one per class (stratified)


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in ``[low, high]`` (no upper bound: ``high=None``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer, but got {text!r}"
            ) from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_range(low, high)}, but got {value}")
        return value

    return parse


def _range(low: float, high: float | None) -> str:
    return f">= {low}" if high is None else f"in [{low}, {high}]"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, with an error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, but got {value}")
    return value


non_negative_int = int_in(0)
seed_int = int_in(0, MAX_SEED)
port_int = int_in(0, 65535)
train_subset_int = int_in(MIN_TRAIN_SUBSET)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0, with an error naming the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, but got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, but got {text}")
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
    parser.add_argument("--study", default="cifar",
                        help="study name: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or "
                        "digit, no '..' (default: cifar)")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: sqlite:///studies/<study>.db); "
        "postgresql://user:pass@host/db for many machines",
    )


JSON_HELP = "machine-readable output (accuracies as fractions)"


def study_command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand that reads one study and can print it as JSON: ``--study``, ``--storage``
    and ``--json``."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    add_study_args(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    return p


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 elsewhere): T counts the
    interpreter's start and the imports too, as the user's clock does."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
