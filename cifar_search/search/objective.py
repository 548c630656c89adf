"""The Optuna objective: trial -> config -> model + data -> trainer, and back as reports.

This is the only module where training meets Optuna: the trainer's ``on_epoch_end`` hook becomes
``trial.report`` and pruning, and every way a trial can end is recorded in the user attribute
``end`` (see ``docs/architecture.md``). Failure is normal here: out-of-memory and divergence
end one trial, as *pruned* so that samplers learn to avoid the region, and the study goes on.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from cifar_search.errors import DiskFullError, DivergedError, SurplusTrial
from cifar_search.search.budget import Budget
from cifar_search.search.space import Space, suggest_config
from cifar_search.search.trackers import Tracker
from cifar_search.train.config import TrainConfig
from cifar_search.train.models import model_cost
from cifar_search.train.recipe import Prepared, SplitData, prepare
from cifar_search.train.runtime import Runtime, versions
from cifar_search.train.trainer import EpochMetrics, train

logger = logging.getLogger(__name__)

OBJECTIVES = ("accuracy", "params", "flops", "time")  # names --objectives accepts


@dataclass(frozen=True)
class Constraints:
    max_params: float | None = None  # parameters
    max_flops: float | None = None  # forward FLOPs per image

    def violations(self, n_params: int, flops: int) -> list[str]:
        out = []
        if self.max_params is not None and n_params > self.max_params:
            out.append(f"{n_params:,} params > max {self.max_params:,.0f}")
        if self.max_flops is not None and flops > self.max_flops:
            out.append(f"{flops:,} FLOPs > max {self.max_flops:,.0f}")
        return out


def trial_seed(study_seed: int, number: int) -> int:
    """A per-trial seed derived from the study seed and the trial number (stable, 31 bits)."""
    digest = hashlib.blake2b(f"{study_seed}:{number}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError)
    )


# forward FLOPs per image above which a trial with no --max-flops ceiling is named in a warning:
# ~20x fast94; a 16-epoch trial of the gpu budget at this cost is tens of GPU-minutes
EXPENSIVE_FLOPS = 5e9

LEAK_WARN_BYTES = 64 << 20  # growth of allocated CUDA memory between trials worth a warning


def release_memory(device: torch.device, *, collect: bool = False) -> int:
    """Return cached CUDA blocks to the device; returns CUDA bytes still allocated (0 on CPU).

    ``collect`` also runs the cyclic garbage collector, which a trial's memory needs only when
    it ended with an exception that still carries its training frames (see
    :meth:`Objective.__call__`). It is not run every trial: with torch and a study's trials
    loaded, a full collection scans ~400,000 objects and takes about 0.25 s on the
    reference CPU, more than the sampler and the storage together."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        return int(torch.cuda.memory_allocated(device))
    return 0


@dataclass
class Objective:
    """Callable for ``study.optimize``. ``on_epoch`` lets a progress display follow along."""

    data: SplitData  # the budget's train/val split, on the device (recipe.split)
    space: Space
    budget: Budget
    runtime: Runtime
    study_seed: int = 0
    objectives: tuple[str, ...] = ("accuracy",)
    constraints: Constraints = field(default_factory=Constraints)
    on_epoch: Callable[[int, int, EpochMetrics], None] | None = None  # (trial, epoch, metrics)
    on_model: Callable[[optuna.Trial, torch.nn.Module, TrainConfig, float], None] | None = None
    # before training: False means the study's trials are all taken (see study.SlotClaim)
    admit: Callable[[optuna.Trial], bool] | None = None
    tags: dict[str, Any] = field(default_factory=dict)  # extra user attributes (the worker)
    # on out-of-memory, queue the same params at the next smaller batch size of the space
    oom_retry: bool = True
    tracker: Tracker | None = None  # MLflow / TensorBoard: params, every epoch (search.trackers)
    _cost_cache: dict[str, tuple[int, int]] = field(default_factory=dict)
    _held_between_trials: int | None = None  # CUDA bytes when this process's last trial began
    _collect_next: bool = False  # the last trial failed with its frames on a live traceback

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        self._release_earlier_trials(trial.number)
        cfg = suggest_config(trial, self.space, epochs=self.budget.epochs)
        seed = trial_seed(self.study_seed, trial.number)
        for key, value in {
            "config": cfg.to_dict(), "seed": seed, "device": self.runtime.describe(),
            "versions": versions(), "budget": self.budget.name, **self.tags,
        }.items():
            trial.set_user_attr(key, value)
        # written once, when the trial ends (validation accuracy is reported every epoch): one
        # commit a trial instead of one an epoch, each a bigger JSON than the last
        curve: list[dict[str, float]] = []
        model: torch.nn.Module | None = None
        prepared: Prepared | None = None
        try:
            n_params, flops = self._measure(cfg)  # on the meta device: allocates nothing
            trial.set_user_attr("n_params", n_params)
            trial.set_user_attr("flops", flops)
            if self.constraints.max_flops is None and flops > EXPENSIVE_FLOPS:
                m = cfg.model
                logger.warning("trial %d: %s width %d depth %s costs %.1f GFLOPs per image "
                               "(above %.0f: tens of GPU-minutes per trial); --max-flops caps "
                               "it", trial.number, m.family, m.width,
                               "-".join(map(str, m.depth)), flops / 1e9, EXPENSIVE_FLOPS / 1e9)
            broken = self.constraints.violations(n_params, flops)
            if broken:
                self._end(trial, "infeasible", curve, "; ".join(broken))
                raise optuna.TrialPruned("infeasible: " + "; ".join(broken))
            if self.admit is not None and not self.admit(trial):
                self._end(trial, "surplus", curve, "the study's trials were all taken")
                raise SurplusTrial(f"trial {trial.number}: the study's trials are all finished "
                                   "or running; this worker stops")
            if self.tracker is not None:
                self.tracker.start(trial.number, dict(trial.params))
            prepared = prepare(cfg, self.data, self.runtime, seed=seed)
            model = prepared.model
            return self._train(trial, prepared, cfg, seed, n_params, flops, curve)
        # A trial that ends early raises a fresh exception after this statement, not the one
        # caught: Optuna keeps the raised exception in a reference cycle (a local of its trial
        # loop, whose frame is on the exception's traceback), and the caught one's traceback
        # holds every training frame, so the model, optimizer state and batches with it. Left
        # behind here, those are freed by reference counting the moment the block ends.
        except (optuna.TrialPruned, SurplusTrial) as exc:
            ending: BaseException = type(exc)(*exc.args)
        except DivergedError as exc:
            self._end(trial, "diverged", curve, str(exc), epoch=exc.epoch)
            ending = optuna.TrialPruned(f"diverged: {exc}")
        except KeyboardInterrupt:
            self._end(trial, "interrupted", curve, "")
            raise
        except DiskFullError as exc:  # the study stops (study.FailureGuard); resuming retries it
            self._end(trial, "disk_full", curve, str(exc))
            raise
        except Exception as exc:
            if not is_out_of_memory(exc):
                self._end(trial, "error", curve,
                          "".join(traceback.format_exception(exc))[-4000:])
                self._collect_next = True  # its traceback, and the memory, live on in Optuna
                raise
            # a model that could not even be built will not fit at any batch size
            retry = None if model is None else self._retry_smaller(trial, cfg.batch_size)
            self._end(trial, "oom", curve, str(exc).splitlines()[0][:300])
            ending = optuna.TrialPruned(f"out of memory at batch {cfg.batch_size}" + (
                f"; queued again at batch {retry}" if retry else ""))
        finally:
            model = prepared = None
        raise ending

    def _release_earlier_trials(self, number: int) -> None:
        """Release, and check, what earlier trials left, before this one allocates anything.
        Done here rather than when a trial ends: until Optuna has handled the exception that
        ended it, that exception holds the trial's frames."""
        held = release_memory(self.runtime.device, collect=self._collect_next)
        self._collect_next = False
        # the data set stays on the device; cuBLAS workspaces (a few MiB) appear once
        grown = 0 if self._held_between_trials is None else held - self._held_between_trials
        if grown > LEAK_WARN_BYTES:
            logger.warning("before trial %d: %d MiB more CUDA memory allocated than before the "
                           "last trial; something from it is still referenced",
                           number, grown >> 20)
        self._held_between_trials = held

    def _retry_smaller(self, trial: optuna.Trial, batch_size: int) -> int | None:
        """Queue this trial's params again at the largest batch size of the space below
        ``batch_size``; returns it, or None where there is none (or the batch size is fixed).
        Learning rates are per 1024 examples, so the retry needs no other change."""
        if not self.oom_retry or "batch_size" not in trial.params:  # fixed: nothing to lower
            return None
        smaller = [int(b) for b in self.space.get("batch_size").choices if b < batch_size]
        if not smaller:
            return None
        retry = max(smaller)
        trial.study.enqueue_trial({**trial.params, "batch_size": retry},
                                  user_attrs={"oom_retry_of": trial.number})
        trial.set_user_attr("oom_retry_batch", retry)
        logger.warning("trial %d: out of memory at batch %d; queued again at batch %d",
                       trial.number, batch_size, retry)
        return retry

    def _measure(self, cfg: TrainConfig) -> tuple[int, int]:
        key = repr(cfg.model)
        if key not in self._cost_cache:
            self._cost_cache[key] = model_cost(cfg.model)
        return self._cost_cache[key]

    def _train(
        self, trial: optuna.Trial, prepared: Prepared, cfg: TrainConfig, seed: int,
        n_params: int, flops: int, curve: list[dict[str, float]],
    ) -> float | tuple[float, ...]:
        def on_epoch_end(epoch: int, m: EpochMetrics) -> None:
            curve.append(m.as_dict())
            if self.on_epoch is not None:
                self.on_epoch(trial.number, epoch, m)
            if self.tracker is not None:
                self.tracker.epoch(trial.number, epoch, m.as_dict())
            if self.multi:  # Optuna cannot prune multi-objective trials
                return
            trial.report(m.val_acc, epoch)
            if trial.should_prune():
                self._end(trial, "pruned", curve, f"val_acc {m.val_acc:.4f}")
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        model = prepared.model
        result = train(model, cfg, prepared.train_loader, prepared.val_loader, self.runtime,
                       seed=seed, on_epoch_end=on_epoch_end)
        final = result.history[-1]
        seconds = sum(m.seconds for m in result.history)
        trial.set_user_attr("train_seconds", seconds)
        trial.set_user_attr("images_per_s", result.images_per_s)
        self._end(trial, "complete", curve, "")
        if self.on_model is not None:
            self.on_model(trial, model, cfg, final.val_acc)
        values = {"accuracy": final.val_acc, "params": float(n_params), "flops": float(flops),
                  "time": seconds}
        if not self.multi:
            return values[self.objectives[0]]
        return tuple(values[o] for o in self.objectives)

    @staticmethod
    def _end(trial: optuna.Trial, why: str, curve: list[dict[str, float]], detail: str, *,
             epoch: int | None = None) -> None:
        """Record how the trial ended, after ``epoch`` epochs (default: those in ``curve``)."""
        epoch = len(curve) if epoch is None else epoch
        trial.set_user_attr("curve", curve)
        trial.set_user_attr("end", why)
        trial.set_user_attr("end_epoch", epoch)
        trial.set_user_attr("epochs_run", epoch)
        if detail:
            trial.set_user_attr("error", detail)
