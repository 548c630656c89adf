"""``cifar-search best``: the best trial's configuration (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cifar_search.cli import _study
from cifar_search.cli._common import study_command
from cifar_search.errors import StudyError


def register(sub: Any) -> None:
    p = study_command(sub, "best", "configuration of the best trial")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifar_search.search.inspection import best_trials, retrain_record

    study = _study.load(args)
    best = best_trials(study)
    if not best:
        raise StudyError(f"study {study.study_name!r} has no complete trial yet.")
    out = [{"number": t.number, "values": t.values, "params": t.params,
            "config": t.user_attrs.get("config"), "seed": t.user_attrs.get("seed"),
            "n_params": t.user_attrs.get("n_params"), "flops": t.user_attrs.get("flops"),
            "retrain": retrain_record(study, t.number)} for t in best]
    if args.json:
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2))
        return 0
    for item in out:
        print(f"trial {item['number']}: values {item['values']}, {item['n_params']:,} params")
        print(json.dumps(item["config"], indent=2))
    return 0
