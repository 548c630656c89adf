"""The training loop. Knows nothing of Optuna: progress leaves through a hook.

:func:`train` runs a :class:`~cifar_search.train.config.TrainConfig` on a model with
device-resident loaders (:class:`~cifar_search.train.loader.DeviceLoader`) and returns a
:class:`TrainResult`. After every epoch it calls ``on_epoch_end(epoch, metrics)``; whatever that
raises (the objective raises ``optuna.TrialPruned``) propagates unchanged. :func:`evaluate` and
:func:`predict_logits` live in :mod:`cifar_search.train.evaluation` and are re-exported here.

Device and precision come from the :class:`~cifar_search.train.runtime.Runtime` (autocast context,
memory format), never from branches here. The running loss is accumulated on the device and
checked for finiteness every :data:`CHECK_EVERY` steps (every step on CPU, where a ``.item()``
costs nothing), so a diverged run raises :class:`~cifar_search.errors.DivergedError` early
without synchronising the accelerator on every step.

A training can stop and go on: after each epoch but the last, ``on_state(epoch, state)`` is
given a thunk that returns the whole state of the training (:meth:`_Loop.state`), and
``train(..., resume=that_state)`` goes on from the epoch after it, the same training to the bit
on a deterministic device. With ``mid_epoch`` (and a loader that can :meth:`seek
<cifar_search.train.loader.DeviceLoader.seek>`) it is also offered after every optimiser step
inside an epoch, the epoch's running sums and the loader's position included, and a resume from
such a state goes on from the next batch: a 10-minute epoch of a wide net on a CPU no longer
loses up to 10 minutes to a stop. :mod:`cifar_search.train.resume` writes and reads it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cifar_search.errors import ConfigError, DivergedError
from cifar_search.train import compile_cache
from cifar_search.train.config import TrainConfig
from cifar_search.train.evaluation import (
    Forward,
    Loader,
    evaluate,
    hard_labels,
    logits_and_labels,
    loss_and_accuracy,
    place,
    predict_logits,
)
from cifar_search.train.optim import build_optimizer
from cifar_search.train.resume import State, rng_state, set_rng_state
from cifar_search.train.runtime import Runtime, seed_everything
from cifar_search.train.schedules import Progress, build_scheduler

__all__ = [
    "EpochMetrics", "TrainResult", "evaluate", "init_from_data", "predict_logits", "train"
]

logger = logging.getLogger(__name__)

CHECK_EVERY = 16  # steps between finiteness checks of the loss on accelerators
INIT_IMAGES = 5000  # un-augmented training images given to ``model.init_from_data``


class TrainLoader(Loader, Protocol):
    """What training needs beyond :class:`Loader` (``DeviceLoader`` fits)."""

    def set_epoch(self, epoch: int) -> None: ...


@runtime_checkable
class SeekableLoader(TrainLoader, Protocol):
    """A loader a training can stop inside an epoch with (``DeviceLoader`` fits): it tells
    where the epoch it yields is and starts the next iteration there."""

    def position(self) -> dict[str, object]: ...

    def seek(self, position: dict[str, object]) -> None: ...


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch. Accuracies are fractions in [0, 1]; ``val_*`` are nan without a val loader."""

    epoch: int  # 1-based
    train_loss: float  # mean training loss (label smoothing and mixing included)
    train_acc: float  # against the argmax of soft targets
    val_loss: float
    val_acc: float
    lr: float  # learning rate of the epoch's last step (first param group)
    seconds: float  # wall time of the epoch, evaluation included
    images_per_s: float  # training throughput (evaluation excluded)

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns; the model itself is trained in place."""

    history: tuple[EpochMetrics, ...]
    best_epoch: int  # epoch of the highest val accuracy (0 without a val loader)
    best_val_acc: float
    final_epoch: int  # epoch whose weights the model holds (the restored one after early stop)
    final_val_loss: float
    final_val_acc: float
    seconds: float  # wall time of the whole call
    stopped_early: bool  # early stopping ran out of patience

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def images_per_s(self) -> float:
        """Mean training throughput over the epochs run."""
        return sum(m.images_per_s for m in self.history) / max(1, len(self.history))

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["history"] = [m.as_dict() for m in self.history]
        return out | {"epochs_run": self.epochs_run, "images_per_s": self.images_per_s}


def train(
    model: nn.Module,
    cfg: TrainConfig,
    train_loader: TrainLoader,
    val_loader: Loader | None,
    runtime: Runtime,
    *,
    seed: int,
    on_epoch_end: Callable[[int, EpochMetrics], None] | None = None,
    max_epochs: int | None = None,
    resume: State | None = None,
    on_state: Callable[[int, Callable[[], State]], None] | None = None,
    mid_epoch: bool = False,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.epochs`` (or ``max_epochs``) epochs.

    The learning-rate schedule always spans ``cfg.epochs``; ``max_epochs`` only stops earlier, so
    a short run is exactly the beginning of a full one. With ``cfg.ema_decay > 0`` the weights'
    moving average is what is evaluated, and it is copied into ``model`` at the end. With
    ``cfg.lookahead > 0`` the weights are pulled back to a slow copy every that many steps
    (:class:`Lookahead`), and the last epoch of the budget ends on the slow weights. A model
    with a ``set_epoch(epoch)`` method is told each epoch before it starts (airbench freezes
    its whitening bias that way). With
    ``cfg.early_stopping > 0`` (and a val loader) training stops after that many epochs without a
    lower validation loss, and the weights of the best epoch are restored at the end.
    With ``runtime.compile`` the forward pass is compiled once per architecture (see
    :mod:`cifar_search.train.compile_cache`).

    Args:
        model: The network; moved to ``runtime.device`` and ``runtime.memory_format``. If it has
            ``init_from_data(images)``, that is called once first with up to
            :data:`INIT_IMAGES` un-augmented training images.
        cfg: The run's configuration.
        train_loader: Yields augmented batches; ``set_epoch`` is called before every epoch.
        val_loader: Un-augmented batches, or None (validation metrics are then nan).
        runtime: Device, autocast dtype, memory format, compile.
        seed: Seeds Python, NumPy and torch at the start.
        on_epoch_end: Called as ``on_epoch_end(epoch, metrics)``; exceptions propagate.
        max_epochs: Stop after this many epochs (None: ``cfg.epochs``).
        resume: A state ``on_state`` gave out for this config, seed and loader: training goes
            on from the epoch after it, or from the batch after it where it was taken inside an
            epoch (``init_from_data`` is skipped, the weights hold it). The caller gives the
            loader the batch cap it had then (a paced training's ``max_batches``).
        on_state: Called as ``on_state(epoch, state)`` after ``on_epoch_end`` for every epoch
            but the last; ``state()`` builds the training's state (a copy on the CPU).
        mid_epoch: Also call ``on_state(epoch - 1, state)`` after every optimiser step of
            epoch ``epoch`` but its last (``epoch - 1``: the epochs complete), the state then
            holding the epoch in progress (``state()["partial"]``). The callee decides whether
            to build it: :meth:`~cifar_search.train.resume.Checkpoint.offer` does about once a
            minute. Needs a :class:`SeekableLoader`.

    Returns:
        Per-epoch history and the final and best validation metrics.

    Raises:
        DivergedError: The training loss became nan or infinite.
        ConfigError: ``mid_epoch`` with a loader that cannot seek.
    """
    if mid_epoch and not isinstance(train_loader, SeekableLoader):
        raise ConfigError(f"mid_epoch needs a loader with position() and seek(), not "
                          f"{type(train_loader).__name__}.")
    start = time.perf_counter()
    epochs = _epochs_to_run(cfg, max_epochs)
    seed_everything(seed)
    place(model, runtime)
    if resume is None:
        init_from_data(model, train_loader, runtime)
    loop = _Loop.build(model, cfg, train_loader, runtime)
    if cfg.early_stopping and val_loader is None:
        logger.warning("early_stopping=%d ignored: no validation loader", cfg.early_stopping)
    keeper = _BestKeeper(cfg.early_stopping if val_loader is not None else 0)
    history: list[EpochMetrics] = []
    before = 0.0  # seconds of the runs before a resume
    partial: State | None = None  # the epoch a resume goes on inside
    if resume is not None:
        history, before = loop.load_state(resume, keeper), float(resume["seconds"])
        partial = resume.get("partial")
        if partial is None:
            logger.info("resuming after epoch %d of %d", len(history), cfg.epochs)
        else:
            logger.info("resuming in epoch %d of %d after batch %d of %d", partial["epoch"],
                        cfg.epochs, partial["step"], partial["batches"])

    def state() -> State:
        return loop.state(history, keeper, before + time.perf_counter() - start)

    for epoch in range(len(history) + 1, epochs + 1):
        offer: Callable[[], None] | None = None  # inside the epoch: epochs complete before it
        if mid_epoch and on_state is not None:
            offer = functools.partial(on_state, epoch - 1, state)
        metrics = loop.epoch(epoch, val_loader, partial, offer)
        partial = None
        history.append(metrics)
        logger.info("epoch %d: %s", epoch, metrics)
        stop = keeper.update(metrics, loop.eval_net)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if stop:
            break
        if on_state is not None and epoch < epochs:
            on_state(epoch, state)
    final_epoch = keeper.restore(loop.eval_net) or len(history)
    if loop.eval_net is not model:  # the EMA weights, or a compiled twin's
        model.load_state_dict(loop.eval_net.state_dict())
    return _result(history, final_epoch, keeper.stopped,
                   before + time.perf_counter() - start)


def _epochs_to_run(cfg: TrainConfig, max_epochs: int | None) -> int:
    if max_epochs is None:
        return cfg.epochs
    if max_epochs < 1:
        raise ConfigError(f"max_epochs must be >= 1, but got {max_epochs=}.")
    return min(cfg.epochs, max_epochs)


def init_from_data(model: nn.Module, loader: TrainLoader, runtime: Runtime) -> None:
    """Call ``model.init_from_data(images)`` if it exists (airbench whitening), with up to
    :data:`INIT_IMAGES` un-augmented training images on ``runtime.device``."""
    init = getattr(model, "init_from_data", None)
    if init is None:
        return
    images = _raw_images(loader, INIT_IMAGES).to(runtime.device)
    with torch.no_grad():
        init(images.contiguous(memory_format=runtime.memory_format))


def _raw_images(loader: TrainLoader, n: int) -> Tensor:
    """Up to ``n`` un-augmented training images, float in [0, 1], ``(n, 3, 32, 32)``."""
    x = getattr(loader, "x", None)
    if isinstance(x, Tensor):
        x = x[:n]
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    batches, count = [], 0  # a loader without raw arrays: take its (augmented) batches
    for xb, _ in loader:
        batches.append(xb)
        count += len(xb)
        if count >= n:
            break
    return torch.cat(batches)[:n]


class _BestKeeper:
    """Early stopping on validation loss; keeps a copy of the best weights."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.stopped = False
        self.state: dict[str, Tensor] | None = None

    def update(self, metrics: EpochMetrics, net: nn.Module) -> bool:
        """Record an epoch; True when patience has run out."""
        if self.patience <= 0:
            return False
        if metrics.val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = metrics.val_loss, metrics.epoch, 0
            self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return False
        self.bad_epochs += 1
        self.stopped = self.bad_epochs >= self.patience
        return self.stopped

    def restore(self, net: nn.Module) -> int:
        """Load the best weights into ``net``; their epoch, or 0 when nothing was kept."""
        if self.state is None:
            return 0
        net.load_state_dict(self.state)
        return self.best_epoch

    def as_state(self) -> State:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "weights": _cpu(self.state)}

    def load(self, state: State) -> None:
        self.best_loss, self.best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        self.bad_epochs, self.state = int(state["bad_epochs"]), state["weights"]


@dataclass
class _Loop:
    """The training state of one :func:`train` call."""

    cfg: TrainConfig
    runtime: Runtime
    loader: TrainLoader
    net: nn.Module  # the module being trained (the caller's or a cached compiled twin)
    forward: Forward
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: AveragedModel | None
    lookahead: Lookahead | None
    progress: Progress
    steps_done: int = 0
    so_far: _EpochSoFar | None = None  # the epoch being trained, while it is

    @classmethod
    def build(
        cls, model: nn.Module, cfg: TrainConfig, loader: TrainLoader, runtime: Runtime
    ) -> _Loop:
        steps = len(loader)
        if steps < 1:
            raise ConfigError("the training loader yields no batches (fewer images than a batch?)")
        net, forward = compile_cache.prepare(model, cfg.model, runtime)
        optimizer = build_optimizer(net, cfg.optim)
        # the loader's batches an epoch may change between epochs (a paced training): the
        # schedule follows the epochs' fractions, not a fixed step count
        progress = Progress(steps)
        scheduler = build_scheduler(optimizer, cfg.optim, cfg.epochs, progress)
        ema = None
        if cfg.ema_decay > 0:
            avg = get_ema_multi_avg_fn(cfg.ema_decay)  # type: ignore[no-untyped-call]
            ema = AveragedModel(net, multi_avg_fn=avg, use_buffers=True)
        lookahead = None
        if cfg.lookahead > 0:
            lookahead = Lookahead(net, cfg.lookahead, cfg.lookahead_decay)
        return cls(cfg, runtime, loader, net, forward, optimizer, scheduler, ema, lookahead,
                   progress)

    @property
    def eval_net(self) -> nn.Module:
        """What is evaluated and kept: the EMA weights when on, else the trained ones."""
        return self.net if self.ema is None else self.ema.module

    def state(self, history: list[EpochMetrics], keeper: _BestKeeper, seconds: float) -> State:
        """Everything the epochs after this one depend on (the weights copied to the CPU;
        the optimiser's state by reference: write it before the next step). The loader's
        order and augmentation come from (seed, epoch) and the schedule's position from the
        epoch (:class:`Progress` restarts each epoch), so neither is stored after an epoch;
        inside one, ``partial`` holds its sums, its step and the loader's position."""
        partial = None
        if self.so_far is not None:
            assert isinstance(self.loader, SeekableLoader)
            partial = self.so_far.as_state(len(self.loader), self.loader.position())
        return {
            "net": _cpu(self.net.state_dict()), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": None if self.ema is None else _cpu(self.ema.state_dict()),
            "lookahead": None if self.lookahead is None else [
                t.cpu() for t in self.lookahead.slow],
            "steps_done": self.steps_done, "history": [m.as_dict() for m in history],
            "keeper": keeper.as_state(), "seconds": seconds, "rng": rng_state(),
            "partial": partial,
        }

    def load_state(self, state: State, keeper: _BestKeeper) -> list[EpochMetrics]:
        """Undo :meth:`state` on a freshly built loop; returns the history so far."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead is not None:
            for slow, saved in zip(self.lookahead.slow, state["lookahead"], strict=True):
                slow.copy_(saved)
        self.steps_done = int(state["steps_done"])
        keeper.load(state["keeper"])
        set_rng_state(state["rng"])
        return [EpochMetrics(**m) for m in state["history"]]

    def epoch(self, epoch: int, val_loader: Loader | None, partial: State | None = None,
              offer: Callable[[], None] | None = None) -> EpochMetrics:
        """Train epoch ``epoch`` (from ``partial``, a mid-epoch state's, when given; calling
        ``offer`` after every step but the last), then validate."""
        start = time.perf_counter() - (0.0 if partial is None else float(partial["seconds"]))
        self.loader.set_epoch(epoch)
        batches = len(self.loader)
        self.progress.start_epoch(epoch, batches)
        set_epoch = getattr(self.net, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        device = self.runtime.device
        so_far = _EpochSoFar(epoch, start, torch.zeros((), device=device),
                             torch.zeros((), device=device, dtype=torch.long))
        if partial is not None:
            if int(partial["epoch"]) != epoch or int(partial["batches"]) != batches:
                raise ConfigError(f"the state was taken in epoch {partial['epoch']} of "
                                  f"{partial['batches']} batches, but epoch {epoch} has "
                                  f"{batches}: give the loader the cap it had then.")
            assert isinstance(self.loader, SeekableLoader)
            self.loader.seek(partial["loader"])
            so_far.load(partial)
            self.progress.steps = so_far.step
        self.so_far = so_far
        try:
            loss, acc, images, lr = self._train_epoch(epoch, so_far, offer)
        finally:
            self.so_far = None
        if self.lookahead is not None and epoch == self.cfg.epochs:
            self.lookahead.finish()
        train_s = time.perf_counter() - start
        val_loss = val_acc = math.nan
        if val_loader is not None:
            fwd = self.forward if self.ema is None else self.eval_net
            out = logits_and_labels(self.eval_net, fwd, val_loader, self.runtime, self.cfg.tta)
            val_loss, val_acc = loss_and_accuracy(*out)
        seconds = time.perf_counter() - start
        return EpochMetrics(epoch, loss, acc, val_loss, val_acc, lr, seconds, images / train_s)

    def _train_epoch(self, epoch: int, run: _EpochSoFar,
                     offer: Callable[[], None] | None) -> tuple[float, float, int, float]:
        """One pass (the rest of one, from ``run``'s step); returns mean loss, accuracy, images
        seen and the last learning rate."""
        device, smoothing = self.runtime.device, self.cfg.optim.label_smoothing
        check = 1 if device.type == "cpu" else CHECK_EVERY
        last = len(self.loader)
        self.net.train()
        for x, target in self.loader:
            run.step += 1
            with self.runtime.autocast():
                logits = self.forward(x)
            loss = F.cross_entropy(logits.float(), target, label_smoothing=smoothing)
            run.loss_sum += loss.detach() * len(x)
            if run.step % check == 0:
                _check_finite(run.loss_sum, loss, epoch, run.step)
            run.correct += (logits.argmax(1) == hard_labels(target)).sum()
            run.images += len(x)
            run.lr = self._step(loss)
            if offer is not None and run.step < last:
                offer()
        images = max(run.images, 1)
        _check_finite(run.loss_sum, run.loss_sum / images, epoch, run.step)
        return run.loss_sum.item() / images, run.correct.item() / images, run.images, run.lr

    def _step(self, loss: Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.optim.grad_clip)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.progress.step()
        self.scheduler.step()
        self.steps_done += 1
        if self.lookahead is not None:
            self.lookahead.after_step(self.steps_done, self.progress.epochs / self.cfg.epochs)
        if self.ema is not None:
            self.ema.update_parameters(self.net)
        return lr


class Lookahead:
    """Lookahead (Zhang et al., 2019) as airbench94 runs it, one sync every ``every`` steps.

    A sync moves the slow copy toward the trained weights, ``slow += (1 - d) (fast - slow)``,
    and restarts the trained weights from it, ``fast = slow``. ``d`` ramps up over the budget as
    ``decay * fraction ** 3`` (``fraction``: of the epoch budget done): early syncs barely hold
    training back, late ones average out the noise of the last steps. Float buffers (batch-norm
    statistics) are synced with the parameters. ``torch._foreach_*``: one kernel per sync for
    all tensors.
    """

    def __init__(self, net: nn.Module, every: int, decay: float) -> None:
        self.every, self.decay = every, decay
        self.fast = [t for t in net.state_dict().values() if t.is_floating_point()]
        self.slow = [t.detach().clone() for t in self.fast]

    @torch.no_grad()
    def after_step(self, step: int, fraction: float) -> None:
        """Sync after optimiser step ``step`` (1-based) when it is a multiple of ``every``;
        ``fraction`` of the budget is done."""
        if step % self.every:
            return
        d = self.decay * min(fraction, 1.0) ** 3
        torch._foreach_lerp_(self.slow, self.fast, 1.0 - d)
        torch._foreach_copy_(self.fast, self.slow)

    @torch.no_grad()
    def finish(self) -> None:
        """End on the slow weights (airbench's final ``update(decay=1.0)``)."""
        torch._foreach_copy_(self.fast, self.slow)


@dataclass
class _EpochSoFar:
    """An epoch being trained: its running sums (on the device) and its step, what a state
    taken inside it must hold for the rest of the epoch to add up as if it never stopped."""

    epoch: int
    started: float  # time.perf_counter() at its start, moved back by the seconds before a stop
    loss_sum: Tensor
    correct: Tensor
    step: int = 0  # optimiser steps of this epoch done
    images: int = 0
    lr: float = 0.0

    def as_state(self, batches: int, loader: dict[str, object]) -> State:
        return {"epoch": self.epoch, "batches": batches, "step": self.step,
                "loss_sum": self.loss_sum.detach().to("cpu", copy=True),
                "correct": self.correct.detach().to("cpu", copy=True), "images": self.images,
                "lr": self.lr, "seconds": time.perf_counter() - self.started, "loader": loader}

    def load(self, state: State) -> None:
        self.step, self.images, self.lr = int(state["step"]), int(state["images"]), state["lr"]
        self.loss_sum.copy_(state["loss_sum"])
        self.correct.copy_(state["correct"])


def _cpu(tensors: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
    """A CPU copy of a state dict (None stays None)."""
    if tensors is None:
        return None
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


def _check_finite(total: Tensor, loss: Tensor, epoch: int, step: int) -> None:
    if not bool(torch.isfinite(total)):
        raise DivergedError(epoch, step, float(loss.detach().float()))


def _result(
    history: list[EpochMetrics], final_epoch: int, stopped: bool, seconds: float
) -> TrainResult:
    final = history[final_epoch - 1]
    scored = [m for m in history if not math.isnan(m.val_acc)]
    best = max(scored, key=lambda m: m.val_acc) if scored else None
    return TrainResult(
        history=tuple(history),
        best_epoch=best.epoch if best else 0,
        best_val_acc=best.val_acc if best else math.nan,
        final_epoch=final_epoch,
        final_val_loss=final.val_loss,
        final_val_acc=final.val_acc,
        seconds=seconds,
        stopped_early=stopped,
    )
