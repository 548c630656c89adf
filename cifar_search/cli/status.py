"""``cifar-search status``: counts by outcome, best so far, time spent."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from cifar_search.cli import _study
from cifar_search.cli._common import study_command


def register(sub: Any) -> None:
    p = study_command(sub, "status", "study summary: counts, best so far, time spent")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifar_search.search.inspection import (
        best_trials,
        retrain_record,
        state_counts,
        time_spent,
    )

    study = _study.load(args)
    counts = state_counts(study)
    attrs = study.user_attrs
    budget = attrs.get("budget", {})
    best = best_trials(study)
    objectives = list(attrs.get("objectives", ["accuracy"]))
    if args.json:
        print(json.dumps({
            "study": study.study_name, "storage": _study.storage_url(args), "budget": budget,
            "ceiling": attrs.get("ceiling"),
            "seed": attrs.get("seed"), "objectives": objectives, "trials": len(study.trials),
            "counts": counts, "time_spent_s": time_spent(study).total_seconds(),
            "best": [{"number": t.number, "values": t.values,
                      "retrain": retrain_record(study, t.number)} for t in best]}, indent=2))
        return 0
    print(f"study {study.study_name} ({_study.storage_url(args)})")
    if budget:
        n = budget.get("train_subset")
        subset = f"{n:,}" if isinstance(n, int) else "all"
        print(f"budget {budget.get('name')}: {budget.get('epochs')} epochs/trial, "
              f"{subset} training images; seed {attrs.get('seed')}")
    ceiling = attrs.get("ceiling")
    if isinstance(ceiling, dict) and ceiling.get("max_flops") is not None:
        print(f"cost ceiling: {ceiling['max_flops'] / 1e6:,.1f} MFLOPs/image "
              f"({ceiling.get('source')})")
    print(f"trials {len(study.trials)}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    spent = datetime.timedelta(seconds=round(time_spent(study).total_seconds()))
    print(f"time spent in trials: {spent}")
    if not best:
        print("best: no complete trial yet")
    for t in best[:10]:
        values = ", ".join(_value(o, v) for o, v in zip(objectives, t.values or [], strict=False))
        family = t.user_attrs.get("config", {}).get("model", {}).get("family", "?")
        line = f"best: trial {t.number} ({family}) {values}"
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


def _value(objective: str, value: float) -> str:
    if objective == "accuracy":
        return f"val acc {100 * value:.2f}%"
    return f"{objective} {value:,.4g}"
