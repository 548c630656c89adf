"""``cifar-search delete-study NAME``: remove a study and its trials from its storage (asks
first; ``--yes`` for scripts), as ``optuna delete-study`` does."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("delete-study", help="delete a study and its trials (asks first)")
    p.add_argument("name", help="the study to delete")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/NAME.db)")
    p.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import optuna

    from cifar_search.cli import _study
    from cifar_search.errors import ConfigError
    from cifar_search.search.storage import open_storage

    args.study = args.name
    study = _study.load(args)  # a study that does not exist: one line naming the known ones
    url = _study.storage_url(args)
    n = len(study.get_trials(deepcopy=False))
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"delete-study {args.study!r} asks for confirmation and standard "
                              "input is not a terminal: pass --yes.")
        answer = input(f"delete study {args.study!r} ({n} trials) from {url}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    optuna.delete_study(study_name=args.study,
                        storage=open_storage(url, create=False, heartbeat_interval=None))
    print(f"deleted study {args.study!r} ({n} trials) from {url}; model folders under runs/ and "
          "checkpoints under artifacts/ are left as they are")
    return 0
