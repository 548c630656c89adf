"""``cifar-search status``: counts by outcome, best so far, time spent."""

from __future__ import annotations

import argparse
from typing import Any

from cifar_search.cli import _study
from cifar_search.cli._common import add_study_args
from cifar_search.inspect_study import best_trials, retrain_record, state_counts, time_spent


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="study summary: counts, best so far, time spent")
    add_study_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    study = _study.load(args)
    counts = state_counts(study)
    attrs = study.user_attrs
    budget = attrs.get("budget", {})
    print(f"study {study.study_name} ({_study.storage_url(args)})")
    if budget:
        subset = budget.get("train_subset") or "all"
        print(f"budget {budget.get('name')}: {budget.get('epochs')} epochs/trial, "
              f"{subset} training images; seed {attrs.get('seed')}")
    print(f"trials {len(study.trials)}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"time spent in trials: {time_spent(study)}")
    best = best_trials(study)
    if not best:
        print("best: no complete trial yet")
    for t in best[:10]:
        values = ", ".join(f"{v:.4g}" for v in t.values or [])
        family = t.user_attrs.get("config", {}).get("model", {}).get("family", "?")
        line = f"best: trial {t.number} ({family}) values [{values}]"
        retrain = retrain_record(study, t.number)
        if retrain:
            line += (f"; test acc {100 * retrain['test_acc_mean']:.2f}% "
                     f"± {100 * retrain.get('test_acc_std', 0):.2f} over "
                     f"{len(retrain.get('seeds', []))} seed(s)")
            single = retrain.get("test_acc_single_mean")
            if isinstance(single, float) and single != retrain["test_acc_mean"]:
                line += f" ({100 * single:.2f}% one view, without TTA)"
        print(line)
    return 0
