"""``cifar-search report``: one offline HTML page about a study and its retrained models."""

from __future__ import annotations

import argparse
from pathlib import Path

from cifar_search.cli import _study
from cifar_search.cli._common import add_study_args
from cifar_search.errors import PathError
from cifar_search.names import check_name, check_out_dir, check_out_file, user_path

EPILOG = """\
examples:
  cifar-search report                                  # studies/cifar-report.html
  cifar-search report --study wide --out reports       # reports/wide-report.html
  cifar-search report --storage postgresql://u:p@host/db --runs /shared/runs/cifar
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a study",
        description="Write one self-contained HTML page (works offline): summary, history,\n"
        "parameter importances, parallel coordinates, learning curves, Pareto front, top\n"
        "trials and retrained models (curves, confusion matrix, misclassified images).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_study_args(parser)
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder to write <study>-report.html in, created if missing (default: studies); "
        "a folder, as --out is for every command",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        metavar="DIR",
        help="folder of retrain runs, each with metrics.json (default: runs/<study>)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the report; print where it was written."""
    import optuna

    from cifar_search.report import build_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _study.storage_url(args)
    name = check_name("study", args.study)
    if args.out is not None and args.out.suffix.lower() in (".html", ".htm"):
        raise PathError(f"--out {args.out}: --out is the folder to write the report in "
                        f"(it is named {name}-report.html); pass --out {args.out.parent}.")
    folder = check_out_dir("--out", args.out or Path("studies"))
    out = folder / f"{name}-report.html"
    runs = args.runs or Path("runs") / name
    check_out_file("--out", out)
    with user_path("--out", out):
        path = build_report(storage, args.study, out, runs_dir=runs)
    print(f"report: {path}")
    return 0
