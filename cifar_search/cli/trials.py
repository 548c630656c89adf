"""``cifar-search trials``: the trials as a table (pandas), best first."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from cifar_search.cli import _study
from cifar_search.cli._common import add_study_args, positive_int
from cifar_search.inspect_study import trials_frame
from cifar_search.names import check_out_file, user_path


def register(sub: Any) -> None:
    p = sub.add_parser("trials", help="table of trials, best first")
    add_study_args(p)
    p.add_argument("--top", type=positive_int, default=10, help="rows to print (default 10)")
    p.add_argument("--csv", metavar="FILE", help="also write every trial to this CSV file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    study = _study.load(args)
    df = trials_frame(study)
    if args.csv:
        with user_path("--csv", check_out_file("--csv", args.csv)):
            df.to_csv(args.csv, index=False)
    if df.empty:
        print("no trials yet")
        return 0
    ascending = study.directions[0].name == "MINIMIZE"
    df = df.sort_values("value", ascending=ascending, na_position="last")
    cols = [c for c in ("number", "state", "end", "value", "val_acc_best", "epochs_run",
                        "n_params", "flops", "train_seconds", "test_acc", "family",
                        "batch_size", "optimizer", "schedule") if c in df.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df[cols].head(args.top).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
