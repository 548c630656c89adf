"""``cifar-search auto --time T``: from nothing to a tested, exported model inside T.

One knob, the wall-clock budget, as AutoGluon's ``fit(time_limit=...)``. In order:

1. every check, then the data (nothing is created on disk before both pass);
2. the study (a normal Optuna study: ``status``, ``trials``, the dashboard, ``report`` and
   ``retrain`` read it as any other) and the time already spent on it, so a re-run after Ctrl-C
   goes on with what is left of T;
3. the measured speed of the strongest preset (:mod:`cifar_search.train.throughput`, cached per
   device) and the plan (:mod:`cifar_search.search.auto_plan`), printed before anything trains;
4. where the plan has a search: successive halving over every preset scaled to fit a trial of
   the top rung, then variants of the strongest preset and of the best other (learning rate,
   weight decay, label smoothing), each rung a set of complete, equal-time trainings (each
   paced to the rung's time, and started only while half of it is left of the search) scored
   on the fixed validation split. The best preset of a rung always goes on, so the winner at
   the top rung is never behind it;
5. the final training of the winner on all training images, scaled again from its recipe's own
   width to fill what is left of T, tested once and exported by
   :func:`cifar_search.search.retrain.retrain` (the same run folder). Its config and images an
   epoch are stored on the study (``auto.final_plan``) before it starts, so a re-run after
   Ctrl-C goes on with the same training from its last resume file
   (:mod:`cifar_search.train.resume`), paced to what is left of T, instead of planning a new,
   shorter one from the start.

How well each rung predicted the next (Spearman's rho over the configs in both) is stored on
the study (user attribute ``auto``) and in the run folder's ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from cifar_search.atomic import atomic_write_text
from cifar_search.errors import ConfigError, StudyError
from cifar_search.names import check_name, check_out_dir
from cifar_search.search import auto_plan
from cifar_search.search.auto_plan import Candidate, Plan, Rung
from cifar_search.search.auto_search import ATTR, Search, record, rung_data
from cifar_search.search.budget import Budget
from cifar_search.search.retrain import RetrainResult, RetrainSettings, RetrainTarget, retrain
from cifar_search.search.space import DEFAULT_SPACE, Space, rebuild_in
from cifar_search.search.space_file import dump_space
from cifar_search.search.storage import default_url, open_storage
from cifar_search.search.study import create_or_resume
from cifar_search.search.timed import pace, probe, repace
from cifar_search.search.trackers import Tracker, make_trackers
from cifar_search.train.config import TrainConfig
from cifar_search.train.data import CifarArrays, load_cifar10
from cifar_search.train.models import model_cost
from cifar_search.train.presets import PRESETS, get_preset
from cifar_search.train.resume import EVERY_S
from cifar_search.train.runtime import Precision, Runtime, resolve_runtime
from cifar_search.train.throughput import Rate, RateCache
from cifar_search.train.trainer import EpochMetrics

logger = logging.getLogger(__name__)
SPENT_EVERY_S = 30.0  # seconds between writes of the time spent during the final training


@dataclass(frozen=True)
class AutoSettings:
    time: float  # T, seconds: data loading, search, final training, test, exports
    study: str = "auto"
    storage: str | None = None  # default: sqlite:///studies/<study>.db
    out: str | Path | None = None  # run folder (default: runs/<study>/auto)
    data: str | Path | None = None
    device: str = "auto"
    precision: Precision = "auto"
    seed: int = 0
    presets: tuple[str, ...] | None = None  # candidates (default: every recipe)
    # named recipes the candidates come from (default: the presets); tests plant their own
    recipes: Mapping[str, TrainConfig] | None = None
    variants: int = 1  # variants of the incumbents the lowest rung adds, per recipe
    export: bool = True  # model.pt2 and model.onnx in the run folder
    cache: Path | None = None  # throughput cache file (default: in the data cache folder)
    rates: Callable[[TrainConfig], Rate] | None = None  # instead of measuring (tests, API)
    started: float | None = None  # time.monotonic() when the command started (default: now)
    checkpoint_every: float = EVERY_S  # seconds between the final training's resume files
    mlflow: str | None = None  # MLflow tracking URI: one run per rung trial (search.trackers)
    tensorboard: str | Path | None = None  # TensorBoard folder: DIR/<study>/trial-N


@dataclass
class AutoResult:
    run_dir: Path
    plan: Plan
    winner: str
    test_acc: float
    wall_s: float  # spent on this study over every run, seconds
    retrain: RetrainResult
    rank_correlation: list[float | None] = field(default_factory=list)


class Clock:
    """T and what every run of the study has spent of it."""

    def __init__(self, time_s: float, spent_before: float, started: float) -> None:
        self.time_s, self.spent_before, self.started = time_s, spent_before, started

    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.started

    def left(self) -> float:
        return self.time_s - self.spent()


Say = Callable[[str], None]


def run_auto(s: AutoSettings, say: Say = logger.info,
             on_epoch: Callable[[int, int, EpochMetrics], None] | None = None) -> AutoResult:
    """Plan T, search where it pays, train the winner on all data, test once, export."""
    started = time.monotonic() if s.started is None else s.started
    if s.time <= 0:
        raise ConfigError(f"--time must be > 0 seconds, but got {s.time}.")
    recipes = s.recipes if s.recipes is not None else {n: p.config for n, p in PRESETS.items()}
    names = s.presets if s.presets is not None else tuple(recipes)
    for n in names:
        if n not in recipes:
            get_preset(n)  # an unknown preset name lists the known ones
            raise ConfigError(f"unknown recipe {n!r} (known: {', '.join(recipes)}).")
    if not names:
        raise ConfigError("auto needs at least one preset as a candidate.")
    check_name("study", s.study)
    if s.out is not None:
        check_out_dir("--out", s.out)
    runtime = resolve_runtime(s.device, s.precision)
    arrays = load_cifar10(s.data)  # before the study: missing data creates no study file
    trackers = make_trackers(s.study, mlflow=s.mlflow, tensorboard=s.tensorboard)  # likewise
    study, spent_before = _open_study(s, runtime)
    clock = Clock(s.time, spent_before, started)
    try:
        return _run(s, study, clock, runtime, arrays, recipes, names, say, on_epoch,
                    trackers or None)
    finally:
        trackers.close()  # a rung trial cut short by Ctrl-C: its run is closed as killed
        record(study, spent_s=clock.spent())


def _open_study(s: AutoSettings, runtime: Runtime) -> tuple[optuna.Study, float]:
    storage = open_storage(s.storage or default_url(s.study))
    study = create_or_resume(
        storage, s.study, sampler=optuna.samplers.RandomSampler(seed=s.seed),
        pruner=optuna.pruners.NopPruner(), objectives=("accuracy",),
        settings={"seed": s.seed, "space": dump_space(DEFAULT_SPACE),
                  "created_with": json.dumps(runtime.describe()), ATTR: {"time_s": s.time}},
    )
    state = study.user_attrs.get(ATTR)
    if not isinstance(state, dict):
        raise StudyError(f"study {s.study!r} was not created by cifar-search auto: use another "
                         "--study name.")
    if not math.isclose(float(state.get("time_s", s.time)), s.time):
        raise StudyError(f"study {s.study!r} was started with --time {state['time_s']:.0f} s, "
                         f"not {s.time:.0f} s: run it again with that time to resume, or use a "
                         "new --study.")
    if "final" in state:
        raise StudyError(f"study {s.study!r} is finished: its model is in "
                         f"{state['final'].get('run_dir')}. Use a new --study to start again.")
    return study, float(state.get("spent_s", 0.0))


def _run(s: AutoSettings, study: optuna.Study, clock: Clock, runtime: Runtime,
         arrays: CifarArrays, recipes: Mapping[str, TrainConfig], names: tuple[str, ...],
         say: Say,
         on_epoch: Callable[[int, int, EpochMetrics], None] | None,
         tracker: Tracker | None = None) -> AutoResult:
    space = DEFAULT_SPACE
    cache = RateCache(s.cache)
    probe_x, probe_y = probe(arrays, runtime.device)
    train_images, test_images = len(arrays.train_y), len(arrays.test_y)
    val_images = rung_data(None, train_images).val_size or 0

    told: set[str] = set()  # each rate is printed once

    def measured(name: str, cfg: TrainConfig, preset: str | None) -> Candidate:
        if s.rates is not None:
            return Candidate(name, cfg, s.rates(cfg), preset)
        rate, fresh = cache.rate(cfg, runtime, probe_x, probe_y)
        if name not in told:
            say(f"{'measured' if fresh else 'cached'} {name}: {rate.train:,.0f} training "
                f"images/s, {rate.eval:,.0f} evaluation images/s")
            told.add(name)
        return Candidate(name, cfg, rate, preset)

    ordered = [n for n in auto_plan.PRIOR if n in names] + [
        n for n in names if n not in auto_plan.PRIOR]
    # from the cache where this device has measured it: a measurement costs ~10 s of T on a
    # 2-core CPU and is itself 10-25% off from run to run there, and the final training is
    # paced to the time left anyway (cifar_search.train.pacing), so the rate only sets its plan
    reference = measured(ordered[0], rebuild_in(recipes[ordered[0]], space), ordered[0])
    stored = study.user_attrs.get(ATTR, {}).get("plan")
    if isinstance(stored, dict):
        plan = _plan_from_dict(stored)
        say("resuming: " + plan.describe())
    else:
        plan = auto_plan.plan(clock.left(), clock.time_s, reference,
                              device=runtime.device.type, train_images=train_images,
                              split_images=train_images - val_images, test_images=test_images,
                              n_candidates=len(ordered) * (1 + s.variants))
        record(study, plan=plan.as_dict(), spent_s=clock.spent())
        say(plan.describe())
    final_train_s = auto_plan.final_share(plan.final_s, clock.time_s, runtime.device.type,
                                          test_images, reference.rate.eval, reference.config.tta)
    planned = study.user_attrs.get(ATTR, {}).get("final_plan")
    if isinstance(planned, dict):  # stopped in the final training: the same one goes on
        winner = Candidate(str(planned["winner"]), TrainConfig.from_dict(planned["config"]),
                           Rate(*planned["rate"]), planned.get("preset"))
        stored_rhos = study.user_attrs.get(ATTR, {}).get("rank_correlation", [])
        return _final(s, study, clock, runtime, arrays, winner, planned.get("trial"), plan,
                      list(stored_rhos), say, on_epoch, resumed=planned)

    def own(name: str) -> TrainConfig:
        return rebuild_in(recipes[name], space)

    rhos: list[float | None] = []
    if not plan.rungs:
        winner = _scale(ordered[0], own(ordered[0]), final_train_s, train_images, space,
                        measured)
        trial_number = None
    else:
        # each recipe at the width a top-rung trial holds, not the final training's: scaled to
        # the final share, fast94 was widened to width 160 at T = 4 h 15 min on the reference
        # CPU and got one epoch (5 optimiser steps) at every rung
        top = plan.rungs[-1]
        entrants = [_scale(n, own(n), top.seconds, top.images, space, measured)
                    for n in ordered]
        search = Search(study, space, runtime, arrays, s.seed, clock.spent, plan, say, tracker)
        best, trial_number, rhos = search.run(entrants)
        winner = _rescale(best, own(best.preset or ordered[0]), final_train_s, train_images,
                          space, measured)
        record(study, rank_correlation=rhos, winner=winner.name, searched=best.name,
               spent_s=clock.spent())
    return _final(s, study, clock, runtime, arrays, winner, trial_number, plan, rhos, say,
                  on_epoch)


def _rescale(best: Candidate, own: TrainConfig, seconds: float, images: int, space: Space,
             measured: Callable[[str, TrainConfig, str | None], Candidate]) -> Candidate:
    """The search's winner scaled to the final training: its hyperparameters, its recipe's
    own width and epochs (``own``), then :func:`_scale` to fill ``seconds``. A recipe narrowed
    to fit a rung may be wider in a final training of many times a rung's time."""
    base = best.config.replace(model=dataclasses.replace(best.config.model,
                                                         width=own.model.width),
                               epochs=own.epochs)
    name = re.sub(r"@w\d+", "", best.name)
    return _scale(name, base, seconds, images, space, measured, preset=best.preset)


def _scale(name: str, base: TrainConfig, seconds: float, images: int, space: Space,
           measured: Callable[[str, TrainConfig, str | None], Candidate],
           preset: str | None = None) -> Candidate:
    """``base`` with the epochs that fill ``seconds``: narrower while it would get fewer than
    ``min(its epochs, MIN_FINAL_EPOCHS)``, wider while the wider one still gets its own epochs
    and this one more than ``MAX_EPOCH_SCALE`` times them.

    Other widths' speeds are first estimated from the measured one by their FLOPs (time per
    image in proportion), and only the width chosen is measured: one measurement, not one a
    width, which on a 2-core CPU costs seconds each. ``preset``: the recipe ``name`` comes
    from (default ``name``)."""
    preset = name if preset is None else preset
    widths = sorted(int(w) for w in space.get("width").choices)
    cand = measured(name, base, preset)
    epochs = auto_plan.epochs_for(seconds, cand.rate, images)
    want = min(base.epochs, auto_plan.MIN_FINAL_EPOCHS)
    step = -1 if epochs < want else 1 if epochs > auto_plan.MAX_EPOCH_SCALE * base.epochs else 0
    flops = model_cost(base.model)[1]
    chosen = base
    w = base.model.width
    while step and w in widths and 0 <= widths.index(w) + step < len(widths):
        w = widths[widths.index(w) + step]
        cfg = base.replace(model=dataclasses.replace(base.model, width=w))
        ratio = flops / model_cost(cfg.model)[1]
        guess = Rate(cand.rate.train * ratio, cand.rate.eval * ratio)
        e = auto_plan.epochs_for(seconds, guess, images)
        if step > 0 and e < base.epochs:
            break
        chosen, epochs = cfg, e
        if (step < 0 and epochs >= want) or (
                step > 0 and epochs <= auto_plan.MAX_EPOCH_SCALE * base.epochs):
            break
    if chosen is not base:
        other = measured(f"{name}@w{chosen.model.width}", chosen, preset)
        e = auto_plan.epochs_for(seconds, other.rate, images)
        base_epochs = auto_plan.epochs_for(seconds, cand.rate, images)
        # FLOPs overstate what narrowing saves where per-step costs dominate (small nets on a
        # CPU): keep the narrower net only if, measured, it buys more epochs
        if (step < 0 and e > base_epochs) or (step > 0 and e >= base.epochs):
            cand, epochs = other, e
        else:
            epochs = base_epochs
    return dataclasses.replace(cand, config=cand.config.replace(epochs=max(1, epochs)))


def _final(s: AutoSettings, study: optuna.Study, clock: Clock, runtime: Runtime,
           arrays: CifarArrays, winner: Candidate, trial_number: int | None, plan: Plan,
           rhos: list[float | None], say: Say,
           on_epoch: Callable[[int, int, EpochMetrics], None] | None,
           resumed: dict[str, Any] | None = None) -> AutoResult:
    """Train the winner on all training images with the epochs that fill what is left
    (``resumed``: the stored plan of a final training that was stopped, kept as it was)."""
    train_images, test_images = len(arrays.train_y), len(arrays.test_y)
    if resumed is None:
        paced = pace(winner.config, winner.rate, clock.left(), clock.time_s,
                     device=runtime.device.type, train_images=train_images,
                     test_images=test_images, export=s.export)
    else:
        paced = repace(winner.config, resumed.get("epoch_images"), winner.rate, clock.left(),
                       clock.time_s, device=runtime.device.type, test_images=test_images,
                       export=s.export)
    cfg, epoch_images, seconds = paced.config, paced.epoch_images, max(paced.seconds, 0.0)
    epochs = cfg.epochs
    preset = winner.preset if trial_number is None else None
    record(study, budget_retrain_epochs=epochs, spent_s=clock.spent(), final_plan={
        "winner": winner.name, "config": cfg.to_dict(), "epoch_images": epoch_images,
        "rate": [winner.rate.train, winner.rate.eval], "preset": winner.preset,
        "trial": trial_number})
    study.set_user_attr("budget", dataclasses.asdict(Budget(
        "auto", epochs=epochs, train_subset=None, retrain_epochs=epochs, pruner="none")))
    target = RetrainTarget(f"{winner.name} chosen by auto", "auto", cfg, paced.source("auto"),
                           study=study, trial_number=trial_number, preset=preset)
    run_dir = Path(s.out) if s.out is not None else Path("runs") / study.study_name / "auto"
    seen = epoch_images if epoch_images is not None else train_images
    say(f"{'resuming the ' if resumed else ''}final training: {winner.name} "
        f"({cfg.model.family}, width {cfg.model.width}), "
        f"{epochs} epochs of {seen:,} of the {train_images:,} images "
        f"(~{winner.rate.train_seconds(seen, epochs):.0f} s in all), "
        f"paced to end in {seconds:.0f} s, then the test set once and the exports; "
        f"{clock.left():.0f} s of T left")
    last = [time.monotonic()]

    def hook(seed: int, epoch: int, m: EpochMetrics) -> None:
        # T's account kept current: a process killed (not Ctrl-C'd) loses at most this much
        if time.monotonic() - last[0] >= SPENT_EVERY_S:
            record(study, spent_s=clock.spent())
            last[0] = time.monotonic()
        if on_epoch is not None:
            on_epoch(epochs, epoch, m)

    # paced: the measured rate is a few seconds of batches, and a shared CPU runs an epoch
    # 5-10% off it; after each epoch the images of the epochs left fit the time left
    result = retrain(target, paced.settings(RetrainSettings(seed=s.seed, out=run_dir,
                                                            data=s.data, device=s.device,
                                                            precision=s.precision,
                                                            export=s.export,
                                                            checkpoint_every=s.checkpoint_every)),
                     on_epoch=hook, arrays=arrays, say=say)
    summary = (f"{winner.name} x {epochs} epochs; "
               + ("no search" if not plan.rungs else f"{len(plan.rungs)} rung(s)")
               + f"; {plan.reason}")
    final = {"run_dir": str(result.run_dir.resolve()), "winner": winner.name,
             "trial": trial_number, "epochs": epochs, "epoch_images": epoch_images,
             "epoch_images_run": result.metrics.get("data", {}).get("epoch_images_run"),
             "test_acc": result.test_acc_mean,
             "spent_s": clock.spent()}
    metrics_path = result.run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["auto"] = {"time_s": clock.time_s, "spent_s": clock.spent(), "plan": plan.as_dict(),
                       "winner": winner.name, "summary": summary, "rank_correlation": rhos}
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2))
    record(study, final=final, spent_s=clock.spent())
    return AutoResult(result.run_dir, plan, winner.name, result.test_acc_mean, clock.spent(),
                      result, rhos)


def _plan_from_dict(d: dict[str, Any]) -> Plan:
    return Plan(float(d["time_s"]), float(d["left_s"]), float(d["search_s"]),
                float(d["final_s"]), tuple(Rung(**r) for r in d.get("rungs", [])),
                str(d.get("reason", "")), list(d.get("notes", [])))
