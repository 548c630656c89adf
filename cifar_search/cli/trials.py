"""``cifar-search trials``: the trials as a table (pandas), best first."""

from __future__ import annotations

import argparse
from typing import Any

from cifar_search.atomic import atomic_path
from cifar_search.cli import _study
from cifar_search.cli._common import add_study_args, positive_int
from cifar_search.names import check_out_file, user_path


def register(sub: Any) -> None:
    p = sub.add_parser("trials", help="table of trials, best first")
    add_study_args(p)
    p.add_argument("--top", type=positive_int, default=10, help="rows to print (default 10)")
    p.add_argument("--csv", metavar="FILE", help="also write every trial to this CSV file")
    p.add_argument("--json", action="store_true",
                   help="every trial as JSON records (accuracies as fractions)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from cifar_search.search.inspection import trials_frame

    # a --csv that cannot be written is refused before the study is opened: nothing is touched
    out = None if not args.csv else check_out_file("--csv", args.csv)
    study = _study.load(args)
    df = trials_frame(study)
    if out is not None:
        with user_path("--csv", out), atomic_path(out) as tmp:
            df.to_csv(tmp, index=False)
    if args.json:
        print(df.to_json(orient="records", indent=2))
        return 0
    if df.empty:
        print("no trials yet")
        return 0
    ascending = study.directions[0].name == "MINIMIZE"
    df = df.sort_values("value", ascending=ascending, na_position="last")
    accuracy = study.user_attrs.get("objectives", ["accuracy"])[0] == "accuracy"
    percent = [c for c in ("value", "val_acc_best", "test_acc") if accuracy or c != "value"]
    for col in percent:  # what a person reads is a percentage; --json keeps fractions
        df[col] = df[col].map(lambda v: "-" if pd.isna(v) else f"{100 * v:.2f}%")
    df = df.rename(columns={"value": "val acc" if accuracy else "value", "val_acc_best":
                            "peak val", "epochs_run": "epochs", "train_seconds": "train s",
                            "test_acc": "test acc", "batch_size": "batch", "n_params": "params"})
    cols = [c for c in ("number", "end", "val acc", "peak val", "epochs", "params", "train s",
                        "test acc", "family", "batch", "optimizer") if c in df.columns]
    with pd.option_context("display.width", 100, "display.max_columns", 30):
        print(df[cols].head(args.top).to_string(index=False, na_rep="-",
                                                float_format=lambda v: f"{v:.4g}"))
    return 0
