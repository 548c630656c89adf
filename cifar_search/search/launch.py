"""From settings to a ready search: every check first (space, storage, presets, data), then run.

Separated from the CLI so that tests, notebooks and worker processes start searches the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from cifar_search.errors import ConfigError
from cifar_search.names import check_name, check_out_dir
from cifar_search.search import ceiling as ceiling_mod
from cifar_search.search.artifacts import TopKCheckpoints, artifact_dir
from cifar_search.search.budget import Budget, get_budget
from cifar_search.search.objective import OBJECTIVES, Constraints, Objective
from cifar_search.search.progress import TrialProgress
from cifar_search.search.space import Space, config_to_params, outside_space
from cifar_search.search.space_file import dump_space, load_space
from cifar_search.search.storage import default_url, open_storage, redact, sqlite_path
from cifar_search.search.study import (
    RunResult,
    SlotClaim,
    StopOnPatience,
    count_finished,
    create_or_resume,
    enqueue_presets,
    make_pruner,
    make_sampler,
    optimize,
    retry_interrupted,
)
from cifar_search.search.trackers import Trackers, make_trackers
from cifar_search.train.config import TrainConfig
from cifar_search.train.data import CifarArrays, load_cifar10
from cifar_search.train.recipe import split
from cifar_search.train.runtime import Precision, Runtime, resolve_runtime

if TYPE_CHECKING:
    from cifar_search.train.throughput import Rate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSettings:
    study: str = "cifar"
    storage: str | None = None  # default: sqlite:///studies/<study>.db
    trials: int = 200  # finished trials in total
    timeout: float | None = None  # seconds
    patience: int | None = None  # stop after this many finished trials without a better best
    budget: str | None = None  # gpu | cpu | smoke (default by device)
    epochs: int | None = None
    train_subset: int | None = None
    space: str | Path | Space | None = None  # a TOML path, a Space, or the default
    sampler: str | None = None
    pruner: str | None = None  # default: the budget's
    seed: int = 0
    presets: tuple[str, ...] | None = None  # warm start; None: every preset within the limits
    max_params: float | None = None
    max_flops: float | None = None
    objectives: tuple[str, ...] = ("accuracy",)
    keep_top_k: int = 3
    heartbeat: int | None = 30  # seconds
    oom_retry: bool = True  # queue an out-of-memory trial again at the next smaller batch
    data: str | Path | None = None
    device: str = "auto"
    precision: Precision = "auto"
    progress: bool = True
    parallel: bool | None = None  # other workers share the study (default: not SQLite)
    worker: int | None = None  # index among the local workers of `--workers N` (None: alone)
    mlflow: str | None = None  # MLflow tracking URI: one run per trial (search.trackers)
    tensorboard: str | Path | None = None  # folder: one TensorBoard run per trial


@dataclass
class OpenSearch:
    """An opened (or resumed) study with everything checked, before any data is on the device:
    what :func:`open_search` returns and ``--workers`` hands on to its worker processes."""

    settings: SearchSettings
    study: optuna.Study
    budget: Budget
    runtime: Runtime
    space: Space
    constraints: Constraints
    ceiling_source: str  # how constraints.max_flops was set (cifar_search.search.ceiling)
    storage_url: str
    enqueued: list[str]
    retried: int
    arrays: CifarArrays  # loaded and checked before the study was opened
    trackers: Trackers  # opened before the study: a bad URI or folder creates nothing

    def describe(self) -> str:
        b, r = self.budget, self.runtime.describe()
        subset = "all" if b.train_subset is None else f"{b.train_subset:,}"
        done = count_finished(self.study)
        lines = [
            f"study {self.study.study_name!r}: {done} of {self.settings.trials} trials finished",
            f"budget {b.name}: {b.epochs} epochs/trial, {subset} training images, "
            f"{b.val_size:,} validation; ceilings: FLOPs/image "
            f"{_ceiling(self.constraints.max_flops)} ({self.ceiling_source}), params "
            f"{_ceiling(self.constraints.max_params)}",
            f"device {r['device_name']} ({r['precision']}, channels_last={r['channels_last']}), "
            f"sampler {type(self.study.sampler).__name__}, "
            f"pruner {type(self.study.pruner).__name__}, seed {self.settings.seed}",
        ]
        if self.enqueued:
            lines.append(f"warm start: {', '.join(self.enqueued)}")
        if self.retried:
            lines.append(f"retrying {self.retried} interrupted trial(s) with the same params")
        where = sqlite_path(self.storage_url)
        study = where.resolve() if where else redact(self.storage_url)
        name = self.study.study_name
        lines.append(f"writing: study {study}, checkpoints "
                     f"{_artifacts_for(self.storage_url, name).resolve()}, retrain runs "
                     f"{(Path('runs') / name).resolve()}")
        return "\n".join(lines)

    def summary(self, result: RunResult, minutes: float) -> str:
        states: dict[str, int] = {}
        for t in self.study.get_trials(deepcopy=False):
            key = t.user_attrs.get("end", t.state.name.lower())
            states[key] = states.get(key, 0) + 1
        counts = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
        best = ""
        if len(self.study.directions) == 1:
            try:
                bt = self.study.best_trial
                best = f"; best val acc {100 * bt.value:.2f}% (trial {bt.number})"  # type: ignore[operator]
            except ValueError:
                best = "; no complete trial yet"
        return (f"{result.finished}/{result.total} finished in {minutes:.1f} min this run "
                f"({counts}){best}")


@dataclass
class Search(OpenSearch):
    """An opened study with its data on the device and its objective: ready to run."""

    objective: Objective

    def run(self) -> RunResult:
        s = self.settings
        patience = [] if s.patience is None else [StopOnPatience(s.patience)]
        progress = TrialProgress(s.trials, count_finished(self.study), self.budget.epochs,
                                 enabled=s.progress)
        self.objective.on_epoch = progress.on_epoch
        verbosity = optuna.logging.get_verbosity()
        if s.progress:  # the bar says what Optuna's per-trial INFO lines would, on one line
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        trackers = [self.objective.tracker] if self.objective.tracker is not None else []
        try:
            return optimize(self.study, self.objective, total=s.trials, timeout=s.timeout,
                            callbacks=[progress, *patience, *trackers])
        finally:
            for tracker in trackers:
                tracker.close()
            progress.close()
            optuna.logging.set_verbosity(verbosity)


def prepare_search(s: SearchSettings) -> Search:
    """Validate everything, open or resume the study, load the data once. Nothing trains yet."""
    opened = open_search(s)
    arrays, budget = opened.arrays, opened.budget
    data = split(arrays, budget.data_spec(len(arrays.train_y)), opened.runtime.device)
    objective = Objective(data=data, space=opened.space, budget=budget,
                          runtime=opened.runtime, study_seed=s.seed, objectives=s.objectives,
                          constraints=opened.constraints, admit=SlotClaim(s.trials),
                          tags={"worker": worker_name(s.worker)}, oom_retry=s.oom_retry,
                          tracker=opened.trackers or None)
    if len(s.objectives) == 1:
        objective.on_model = TopKCheckpoints(_artifacts_for(opened.storage_url, s.study),
                                             s.keep_top_k)
    fields = {f.name: getattr(opened, f.name) for f in dataclasses.fields(OpenSearch)}
    return Search(**fields, objective=objective)


def open_search(s: SearchSettings) -> OpenSearch:
    """Every check (names, numbers, space file, presets, data), then create or resume the study:
    a refused input leaves nothing on disk. A standalone process (``s.worker is None``) also
    queues the warm start and the retries of interrupted trials; the local workers of
    ``--workers N`` leave that to the process that started them."""
    check_name("study", s.study)
    for o in s.objectives:
        if o not in OBJECTIVES:
            raise ConfigError(f"unknown objective {o!r} (known: {', '.join(OBJECTIVES)}).")
    named = s.objectives
    if not named or named[0] != "accuracy" or len(set(named)) != len(named):
        raise ConfigError(f"--objectives must start with accuracy and name each objective "
                          f"once, got {','.join(named)!r}.")
    if s.trials < 1:
        raise ConfigError(f"--trials must be >= 1, but got {s.trials}.")
    if s.timeout is not None and s.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0 seconds, but got {s.timeout}.")
    for flag, limit in (("--max-params", s.max_params), ("--max-flops", s.max_flops)):
        if limit is not None and not limit > 0:
            raise ConfigError(f"{flag} must be > 0, but got {limit}.")
    runtime = resolve_runtime(s.device, s.precision)
    budget = get_budget(s.budget, cuda=runtime.device.type == "cuda").override(
        epochs=s.epochs, train_subset=s.train_subset
    )
    space = s.space if isinstance(s.space, Space) else load_space(s.space)
    from cifar_search.train.presets import get_preset

    for name in s.presets or ():
        get_preset(name)  # an unknown name fails here, before anything is written
    multi = len(s.objectives) > 1
    sampler_name = s.sampler or ("nsga2" if multi else "tpe")
    storage_url = s.storage or default_url(s.study)
    arrays = _checked_data(s, budget)  # before the storage: missing data creates no study file
    if s.tensorboard is not None:
        check_out_dir("--tensorboard", s.tensorboard)
    trackers = make_trackers(s.study, mlflow=s.mlflow, tensorboard=s.tensorboard)
    storage = open_storage(storage_url, heartbeat_interval=s.heartbeat)
    existing = _existing(storage, s.study)
    stored = dict(existing.user_attrs) if existing is not None else {}
    ceiling = _ceiling_of(s, budget, runtime, arrays, stored)
    constraints = Constraints(max_params=s.max_params, max_flops=ceiling.max_flops)
    names = s.presets if s.presets is not None else _fitting_presets(constraints)
    presets = _preset_params(names, space, constraints, warn=s.presets is not None)
    parallel = s.parallel if s.parallel is not None else not storage_url.startswith("sqlite")
    n_trials = len(existing.trials) if existing is not None else 0
    seed = sampler_seed(s.seed, n_trials, s.worker, parallel=parallel)
    sampler = make_sampler(sampler_name, seed, multi=multi, parallel=parallel)
    pruner = make_pruner(s.pruner or budget.pruner, budget)
    settings = {"budget": dataclasses.asdict(budget), "seed": s.seed,
                "space": dump_space(space), "created_with": json.dumps(runtime.describe()),
                ceiling_mod.ATTR: ceiling.as_dict()}
    study = create_or_resume(storage, s.study, sampler=sampler, pruner=pruner,
                             objectives=s.objectives, settings=settings)
    retried, enqueued = 0, []
    if s.worker is None:
        retried = retry_interrupted(study)
        enqueued = enqueue_presets(study, presets, lambda p: outside_space(p, space))
    return OpenSearch(s, study, budget, runtime, space, constraints, ceiling.source,
                      storage_url, enqueued, retried, arrays, trackers)


def _existing(storage: optuna.storages.BaseStorage, study: str) -> optuna.Study | None:
    """The study being resumed (None where it does not exist yet)."""
    try:
        return optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return None


def _ceiling_of(s: SearchSettings, budget: Budget, runtime: Runtime, arrays: CifarArrays,
                stored: dict[str, object]) -> ceiling_mod.Ceiling:
    """The search's FLOPs ceiling (:mod:`cifar_search.search.ceiling`); where the budget
    derives it, fast94's speed is read from the throughput cache or measured (~10 s on the
    reference CPU, once per device)."""
    from cifar_search.search.auto_plan import PRIOR
    from cifar_search.search.timed import probe
    from cifar_search.train.models import model_cost
    from cifar_search.train.presets import get_preset
    from cifar_search.train.throughput import RateCache

    reference = get_preset(PRIOR[0]).config

    def measure() -> tuple[Rate, bool]:
        return RateCache().rate(reference, runtime, *probe(arrays, runtime.device))

    return ceiling_mod.resolve(budget, given=s.max_flops, stored=stored, measure=measure,
                               reference=PRIOR[0], reference_flops=model_cost(reference.model)[1],
                               train_images=budget.trial_images(len(arrays.train_y)))


def _checked_data(s: SearchSettings, budget: Budget) -> CifarArrays:
    """The data, loaded once and checked against ``--train-subset`` (the budget's own subset
    is a ceiling: a smaller data set trains on all of its split)."""
    arrays = load_cifar10(s.data)
    n = len(arrays.train_y)
    dataclasses.replace(budget.data_spec(n), train_subset=s.train_subset).check(arrays)
    return arrays


def sampler_seed(seed: int, n_trials: int, worker: int | None, *, parallel: bool) -> int:
    """The sampler's seed: the study seed mixed with the resume point, so a resumed study does
    not replay its first params, and, where workers share the study, with the worker (its
    index, or host and pid for a process started on its own), so they do not sample alike."""
    if not parallel and worker is None:
        return seed + n_trials
    who = worker_name(worker)
    digest = hashlib.blake2b(f"{seed}:{n_trials}:{who}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def _ceiling(value: float | None) -> str:
    return "none" if value is None else f"{value:,.3g}"


def worker_name(worker: int | None) -> str:
    """How a trial names the process that ran it: ``host/pid``, with ``#i`` for a local worker."""
    name = f"{socket.gethostname()}/{os.getpid()}"
    return name if worker is None else f"{name}#{worker}"


def _artifacts_for(storage_url: str, study: str) -> Path:
    if storage_url.startswith("sqlite:///"):
        return artifact_dir(study, Path(storage_url.removeprefix("sqlite:///")).parent)
    return artifact_dir(study)


def _fitting_presets(constraints: Constraints) -> tuple[str, ...]:
    """The presets that fit the constraints at their own width or a smaller one of the
    space's: the default warm start (see :func:`fit_preset`)."""
    from cifar_search.search.space import DEFAULT_SPACE
    from cifar_search.train.presets import PRESETS

    return tuple(n for n, p in PRESETS.items()
                 if fit_preset(p.config, constraints, DEFAULT_SPACE) is not None)


def fit_preset(cfg: TrainConfig, constraints: Constraints, space: Space) -> TrainConfig | None:
    """``cfg`` at the widest of its own width and the space's smaller widths that fits
    ``constraints`` (None if not even the smallest does): a preset scaled to the budget rather
    than dropped from the warm start (the cpu budget's 91 MFLOPs on the reference CPU take
    fast94 at width 32)."""
    from cifar_search.train.models import model_cost

    widths = sorted((int(w) for w in space.get("width").choices
                     if int(w) <= cfg.model.width), reverse=True)
    for width in [cfg.model.width, *[w for w in widths if w < cfg.model.width]]:
        scaled = cfg.replace(model=dataclasses.replace(cfg.model, width=width))
        if not constraints.violations(*model_cost(scaled.model)):
            return scaled
    return None


def _preset_params(names: tuple[str, ...], space: Space, constraints: Constraints, *,
                   warn: bool = True) -> dict[str, dict[str, object]]:
    """Warm-start params by name: ``fast94``, or ``fast94@w32`` where it had to be narrowed;
    a preset that fits at no width keeps its own (its trial is then recorded infeasible). A
    preset that differs from what a narrowed space fixes is left out, with a warning: enqueued,
    it would train the space's values under the preset's name."""
    from cifar_search.train.presets import get_preset

    out: dict[str, dict[str, object]] = {}
    for n in names:
        cfg = get_preset(n).config
        fitted = fit_preset(cfg, constraints, space) or cfg
        name = n if fitted.model.width == cfg.model.width else f"{n}@w{fitted.model.width}"
        problems = outside_space(config_to_params(fitted, space, fixed=True), space)
        if problems:  # a warning where the user named the preset, else a debug line
            logger.log(logging.WARNING if warn else logging.DEBUG,
                       "preset %s is outside this space (%s); not enqueued", name, problems[0])
            continue
        out[name] = config_to_params(fitted, space)
    return out
