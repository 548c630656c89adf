"""The search loop: sampler, pruner, resume, warm start, and what ends a study.

``--trials N`` means the study ends with N *finished* trials in total (complete or pruned, which
includes diverged and out-of-memory trials), counted across every worker and every run: a
resumed study runs only what is missing. Infeasible configs (over ``--max-params`` /
``--max-flops``) are recorded as pruned, so samplers learn to avoid them, but cost no training
and do not count. Failed trials (a crash, an interrupt, a dead
worker) do not count; interrupted and stale ones are retried with the same params.

Several workers (processes, GPUs, machines) can share one study. Trial numbers are handed out
atomically by the storage, so they settle who goes over the total: before it trains, trial k
checks that fewer than N trials numbered below k are finished or training (:func:`has_slot`).
A trial that finds no slot is closed as failed with ``end="surplus"`` (it did not train and does
not count), its worker stops, and any params it was given from the queue are queued again.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from cifar_search.errors import ConfigError, DiskFullError, StudyError
from cifar_search.search.budget import Budget
from cifar_search.search.pruners import RungHalvingPruner, RungHyperbandPruner
from cifar_search.search.samplers import make_tpe

logger = logging.getLogger(__name__)
# heartbeat, grouped TPE and the stale-trial retry are "experimental" in Optuna 5; we rely on
# them deliberately and test them, so their warnings would only be noise in every run.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

SAMPLERS = ("tpe", "random", "cmaes", "gp", "nsga2")
PRUNERS = ("hyperband", "median", "percentile", "halving", "wilcoxon", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CONSECUTIVE_ERRORS = 3  # a bug that fails every trial stops the study after this many
MAX_CONSECUTIVE_INFEASIBLE = 50  # a space with nothing within the limits stops after this many
NOT_COUNTED = ("infeasible", "surplus")  # `end` values of trials that never trained
# the logger of Optuna's trial loop, which logs a failed trial with its traceback (if Optuna
# renames it, the traceback simply shows again)
OPTUNA_TRIAL_LOGGER = "optuna.study._optimize"
RETRIED_ENDS = ("interrupted", "disk_full")  # failed trials whose params run again on resume
SLOT_WAIT = 30.0  # seconds a trial waits for lower-numbered trials still being set up
CLAIMED = "claimed"  # user attribute: this trial passed its checks and trains
WAIT_POLL_SECONDS = 2.0  # how often a worker with nothing left to start re-reads the study


def objective_directions(
    objectives: tuple[str, ...],
) -> list[Literal["minimize", "maximize"]]:
    """Accuracy is maximised; every other objective (params, FLOPs, time) minimised."""
    return ["maximize" if o == "accuracy" else "minimize" for o in objectives]


# what optuna-dashboard writes on its axes instead of "Objective 0"
METRIC_NAMES = {"accuracy": "val accuracy", "params": "params", "flops": "FLOPs",
                "time": "train seconds"}


def make_sampler(
    name: str,
    seed: int | None,
    *,
    multi: bool = False,
    parallel: bool = False,
    n_startup: int = 10,
) -> optuna.samplers.BaseSampler:
    """A sampler by name.

    TPE is multivariate and grouped (conditional params are modelled jointly within their
    groups). With several workers (``parallel``) it also uses the constant liar, so that workers
    do not all sample next to the same promising point; alone, it leaves it off because the
    liar makes TPE re-read the storage on every param (measured: ~2x the per-trial overhead
    on SQLite, see bench/RESULTS.md). It reads and splits the history once per trial, not once
    per group (:mod:`cifar_search.search.samplers`).
    """
    if name == "tpe":
        return make_tpe(
            seed=seed, multivariate=True, group=True, constant_liar=parallel,
            n_startup_trials=n_startup,
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":  # conditional params fall back to the independent sampler
        return optuna.samplers.CmaEsSampler(
            seed=seed, independent_sampler=optuna.samplers.TPESampler(seed=seed)
        )
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)}).")


def make_pruner(name: str, budget: Budget) -> optuna.pruners.BasePruner:
    """A pruner by name, on validation accuracy reported once per epoch. The successive-halving
    family skips its storage read at steps where it cannot act
    (:mod:`cifar_search.search.pruners`)."""
    warmup = max(budget.min_epochs - 1, 0)
    if name == "hyperband":
        return RungHyperbandPruner(
            min_resource=budget.min_epochs, max_resource=budget.epochs, reduction_factor=3
        )
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(33.0, n_startup_trials=3, n_warmup_steps=warmup)
    if name == "halving":
        return RungHalvingPruner(min_resource=budget.min_epochs, reduction_factor=3)
    if name == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=budget.min_epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r} (known: {', '.join(PRUNERS)}).")


def counts_toward_total(trial: FrozenTrial) -> bool:
    """Complete or pruned, except infeasible configs (rejected before training, free)."""
    return trial.user_attrs.get("end") not in NOT_COUNTED


def count_finished(study: optuna.Study) -> int:
    """Trials that count toward ``--trials``: finished, and actually trained."""
    return sum(map(counts_toward_total, study.get_trials(deepcopy=False, states=FINISHED)))


@dataclass
class StopAtTotal:
    """Stop a worker once finished trials plus those still running reach ``total``, so that
    parallel workers do not overshoot (a running trial that then fails is made up by the
    workers still going, or by the next run)."""

    total: int

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("end") == "surplus":  # the others fill every slot
            study.stop()
            return
        states = (*FINISHED, TrialState.RUNNING)
        trials = study.get_trials(deepcopy=False, states=states)
        if sum(map(counts_toward_total, trials)) >= self.total:
            study.stop()


@dataclass
class StopOnPatience:
    """``--patience N``: stop once the best value has not improved in the last ``patience``
    finished trials of the study (all runs and workers; a tie is no improvement). Pruned trials
    count, infeasible ones do not, as for ``--trials`` (optuna issues #1001, #4292)."""

    patience: int

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if stale_trials(study) >= self.patience:
            study.stop()


def stale_trials(study: optuna.Study) -> int:
    """Finished trials since the one that set the best value (all of them if none has)."""
    done = [t for t in study.get_trials(deepcopy=False, states=FINISHED)
            if counts_toward_total(t)]
    done.sort(key=lambda t: t.number)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best, since = None, 0
    for t in done:
        v = t.value if t.state == TrialState.COMPLETE else None
        if v is not None and (best is None or (v > best if maximize else v < best)):
            best, since = v, 0
        else:
            since += 1
    return since


def has_slot(study: optuna.Study, number: int, total: int, *, wait: float = SLOT_WAIT) -> bool:
    """Whether trial ``number`` fits within ``total``: fewer than ``total`` counting trials
    numbered below it are finished or training.

    Lower-numbered trials still being set up (sampled, costed) may yet turn out infeasible, so
    they are waited for, at most ``wait`` seconds; after that they are counted as training,
    which can leave the study one short (the next run makes it up), never one over.
    """
    deadline = time.monotonic() + wait
    while True:
        trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        lower = [t for t in trials if t.number < number]
        settling = [t for t in lower if t.state == TrialState.RUNNING
                    and CLAIMED not in t.user_attrs and "end" not in t.user_attrs]
        if not settling or time.monotonic() > deadline:
            return sum(map(counts_toward_total, lower)) < total
        time.sleep(0.2)


@dataclass
class SlotClaim:
    """The objective's ``admit`` hook: claims one of the study's ``total`` slots for a trial
    that is about to train, or says there is none left (see :func:`has_slot`)."""

    total: int
    wait: float = SLOT_WAIT

    def __call__(self, trial: optuna.Trial) -> bool:
        if not has_slot(trial.study, trial.number, self.total, wait=self.wait):
            _requeue_fixed_params(trial)
            return False
        trial.set_user_attr(CLAIMED, True)
        return True


def _requeue_fixed_params(trial: optuna.Trial) -> None:
    """Queue a surplus trial's params again if they came from the queue (a preset, a retry),
    so that a later run with a larger ``--trials`` still trains them."""
    frozen = trial.study.get_trials(deepcopy=False)[trial.number]
    if "fixed_params" not in frozen.system_attrs:
        return
    keep = {k: v for k, v in frozen.user_attrs.items() if k in ("preset", "retry_of")}
    trial.study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
        user_attrs=keep, system_attrs=dict(frozen.system_attrs),
    ))


@dataclass
class FailureGuard:
    """Stop after ``limit`` consecutive trials failed with an unexpected error, keeping its
    traceback (a bug that fails every trial should not burn a 200-trial study)."""

    limit: int = MAX_CONSECUTIVE_ERRORS
    infeasible_limit: int = MAX_CONSECUTIVE_INFEASIBLE
    streak: int = 0
    infeasible: int = 0
    disk_full: bool = False
    last_error: str = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        end = trial.user_attrs.get("end")
        if end == "disk_full":  # every later trial would fail the same way: stop now
            self.disk_full = True
            self.last_error = str(trial.user_attrs.get("error", "no space left"))
        elif trial.state == TrialState.FAIL and end == "error":
            self.streak += 1
            self.last_error = str(trial.user_attrs.get("error", ""))
        elif end == "infeasible":
            self.infeasible += 1
            if self.infeasible >= self.infeasible_limit:
                self.last_error = (
                    f"{self.infeasible} configs in a row were infeasible (last: "
                    f"{trial.user_attrs.get('error')}): loosen --max-params / --max-flops or "
                    "narrow the space to what fits."
                )
        elif trial.state in FINISHED:
            self.streak = self.infeasible = 0
        if self.tripped:
            study.stop()

    @property
    def tripped(self) -> bool:
        return (self.disk_full or self.streak >= self.limit
                or self.infeasible >= self.infeasible_limit)


def create_or_resume(
    storage: optuna.storages.BaseStorage,
    name: str,
    *,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    objectives: Sequence[str],
    settings: dict[str, Any],
) -> optuna.Study:
    """Create the study, or load it and check that it was run with compatible settings."""
    directions = objective_directions(tuple(objectives))
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, pruner=pruner,
        directions=directions, load_if_exists=True,
    )
    stored = study.user_attrs
    if not stored:
        with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAMES[o] for o in objectives])
        study.set_user_attr("objectives", list(objectives))
        for key, value in settings.items():
            study.set_user_attr(key, value)
        return study
    if list(stored.get("objectives", ["accuracy"])) != list(objectives):
        raise StudyError(f"study {name!r} was created with --objectives "
                         f"{','.join(stored['objectives'])}, not {','.join(objectives)}.")
    old, new = stored.get("budget"), settings.get("budget")
    if isinstance(old, dict) and isinstance(new, dict):  # what makes trials comparable only:
        # the budget's ceiling and pruner defaults may change between versions of the tool
        keys = ("name", "epochs", "train_subset", "val_size")
        was, now = {k: old.get(k) for k in keys}, {k: new.get(k) for k in keys}
        if was != now:
            raise StudyError(f"study {name!r} was created with budget {was!r}; resuming with "
                             f"{now!r} would mix incomparable trials. Use a new --study name.")
    return study


def retry_interrupted(study: optuna.Study) -> int:
    """Enqueue, once, the params of trials interrupted by Ctrl-C / SIGTERM or by a full disk
    (neither says anything about the params). Returns how many."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        if (t.state == TrialState.FAIL and t.user_attrs.get("end") in RETRIED_ENDS
                and t.number not in retried and t.params):
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number},
                                skip_if_exists=False)
            n += 1
    return n


def enqueue_presets(
    study: optuna.Study,
    presets: dict[str, dict[str, Any]],
    problems: Callable[[dict[str, Any]], list[str]],
) -> list[str]:
    """Enqueue each preset's params once per study (warm start). Returns the names enqueued."""
    done = {t.user_attrs.get("preset") for t in study.get_trials(deepcopy=False)}
    out = []
    for name, params in presets.items():
        if name in done:
            continue
        bad = problems(params)
        if bad:
            logger.warning("preset %s is outside this space (%s); not enqueued", name, bad[0])
            continue
        study.enqueue_trial(params, user_attrs={"preset": name}, skip_if_exists=False)
        out.append(name)
    return out


@dataclass
class RunResult:
    finished: int
    total: int
    interrupted: bool = False
    stopped_by_errors: bool = False
    last_error: str = ""


def optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    *,
    total: int,
    timeout: float | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> RunResult:
    """Run trials until the study has ``total`` finished ones (or the timeout passes)."""
    guard = FailureGuard()
    before = count_finished(study)
    result = RunResult(finished=before, total=total)
    if before >= total:
        return result
    deadline = None if timeout is None else time.monotonic() + timeout
    quiet = _NoTracebackFor(DiskFullError)
    trial_log = logging.getLogger(OPTUNA_TRIAL_LOGGER)
    trial_log.addFilter(quiet)
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            study.optimize(
                objective, n_trials=None, timeout=left, catch=(Exception,),
                callbacks=[StopAtTotal(total), guard, *callbacks],
            )
            if guard.tripped or not _wait_for_others(study, total, deadline):
                break
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        trial_log.removeFilter(quiet)
    result.finished = count_finished(study)
    result.stopped_by_errors = guard.tripped
    result.last_error = guard.last_error
    return result


class _NoTracebackFor(logging.Filter):
    """Optuna logs a failed trial's traceback; for an expected failure (a full disk, whose one
    line the CLI prints) the warning stays, without the traceback."""

    def __init__(self, *kinds: type[BaseException]) -> None:
        super().__init__()
        self.kinds = kinds

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.kinds):
            record.exc_info = None
            record.exc_text = None
        return True


def _wait_for_others(study: optuna.Study, total: int, deadline: float | None) -> bool:
    """After this worker found every slot taken: wait while the trials holding the last slots
    run elsewhere. Returns True as soon as a slot frees (a trial failed, or went stale and was
    queued again by the heartbeat check), so that a surviving worker retries a dead worker's
    trial instead of leaving the study one short; False once the study is done."""
    while deadline is None or time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)  # a no-op without heartbeats
        trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        if sum(map(counts_toward_total, trials)) < total:
            return True  # a slot is free: run another trial
        if not any(t.state == TrialState.RUNNING for t in trials):
            return False  # all finished: the study is done
        time.sleep(WAIT_POLL_SECONDS)
    return False
