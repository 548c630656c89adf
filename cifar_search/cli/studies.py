"""``cifar-search studies``: every study of a storage, or of every ``studies/*.db``, with counts
and the best validation accuracy (as ``optuna studies`` does for Optuna's CLI)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

EPILOG = """\
Without --storage, every SQLite file in the studies folder (default: studies/ under the current
folder) is read. Accuracy is a percentage here and a fraction in --json.

examples:
  cifar-search studies
  cifar-search studies --storage postgresql://user:pw@db/optuna --json
"""


def register(sub: Any) -> None:
    p = sub.add_parser("studies", help="list studies with trial counts and best accuracy",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", help="Optuna storage URL (default: every studies/*.db)")
    p.add_argument("--dir", type=Path, default=Path("studies"), metavar="DIR",
                   help="folder of SQLite studies read without --storage (default: studies)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import optuna

    from cifar_search.errors import StudyError
    from cifar_search.search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.storage:
        urls = [args.storage]
    elif args.dir.is_dir():
        urls = [f"sqlite:///{p}" for p in sorted(args.dir.glob("*.db"))]
    else:
        raise StudyError(f"no studies folder at {args.dir.resolve()}: pass --dir DIR or "
                         "--storage URL.")
    rows = []
    for url in urls:
        storage = open_storage(url, create=False, heartbeat_interval=None)
        for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
            best = s.best_trial
            one = best is not None and len(s.directions) == 1
            rows.append({"study": s.study_name, "storage": url, "trials": s.n_trials,
                         "best_value": best.value if one else None,  # type: ignore[union-attr]
                         "best_trial": best.number if best is not None else None,
                         "started": s.datetime_start.isoformat(timespec="seconds")
                         if s.datetime_start else None})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no studies in {', '.join(urls) or args.dir.resolve()}")
        return 0
    width = max(len(r["study"]) for r in rows)
    print(f"{'study':<{width}}  {'trials':>6}  {'best val acc':>12}  {'started':<19}  storage")
    for r in rows:
        acc = "-" if r["best_value"] is None else f"{100 * r['best_value']:.2f}%"
        print(f"{r['study']:<{width}}  {r['trials']:>6}  {acc:>12}  {r['started'] or '-':<19}  "
              f"{r['storage']}")
    return 0
