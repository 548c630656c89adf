"""Experiment trackers a search reports to, beside its study: MLflow and TensorBoard.

One MLflow run (or one TensorBoard run folder) per trial that trains: its params when it
starts, its metrics at every epoch while it runs (``val_acc``, ``train_loss``, ``lr``, ...,
step = epoch), and how it ended (``end``: complete, pruned, diverged, oom, ...) with its final
value when it stops. Trials that never train (infeasible, surplus) are not tracked.

Both are optional extras: ``pip install 'cifar-search[mlflow]'`` or
``'cifar-search[tensorboard]'``.
optuna-integration's ``MLflowCallback`` logs a trial only once it has ended, and its
``TensorBoardCallback`` needs TensorFlow; these log every epoch as it happens, through
``MlflowClient`` (explicit run ids: no global active run, so worker processes cannot mix
their runs up) and torch's own ``SummaryWriter`` (only the ``tensorboard`` package).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from cifar_search.errors import ConfigError

logger = logging.getLogger(__name__)

# how each ``end`` of a trial shows in MLflow's run status
MLFLOW_STATUS = {"complete": "FINISHED", "pruned": "FINISHED", "interrupted": "KILLED"}


class Tracker:
    """What the objective tells a tracker; also a study callback (the trial ended)."""

    def start(self, number: int, params: dict[str, Any]) -> None:
        """Trial ``number`` starts training with ``params``."""

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """Trial ``number`` finished epoch ``epoch`` (1-based)."""

    def end(self, trial: FrozenTrial) -> None:
        """The trial ended; its user attributes say how (``end``)."""

    def close(self) -> None:
        """The search stopped: close what is still open (a trial cut short by Ctrl-C, whose
        end Optuna reports to no callback)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.end(trial)


class Trackers(Tracker):
    """Several trackers as one; a tracker that fails is named once and then left out, so a
    tracking server that goes away never stops the search."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = list(trackers)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _each(self, method: str, *args: Any) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, method)(*args)
            except Exception as exc:  # an outside service: report it, keep searching
                logger.warning("%s failed (%s: %s); the search goes on without it",
                               type(t).__name__, type(exc).__name__, exc)
                self.trackers.remove(t)

    def start(self, number: int, params: dict[str, Any]) -> None:
        self._each("start", number, params)

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self._each("epoch", number, epoch, metrics)

    def end(self, trial: FrozenTrial) -> None:
        self._each("end", trial)

    def close(self) -> None:
        self._each("close")


def _value(trial: FrozenTrial) -> float | None:
    return None if not trial.values else float(trial.values[0])


class MLflowTracker(Tracker):
    """One MLflow run per trial in the experiment named after the study."""

    def __init__(self, uri: str, study: str) -> None:
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("--mlflow needs MLflow: pip install "
                              "'cifar-search[mlflow]'.") from None
        self._metric, self._param = Metric, Param
        self.client = MlflowClient(tracking_uri=uri)
        self.study = study
        try:
            found = self.client.get_experiment_by_name(study)
            self.experiment = (found.experiment_id if found is not None
                               else self.client.create_experiment(study))
        except Exception as exc:
            raise ConfigError(f"--mlflow {uri}: cannot open the tracking store "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0]}).") from None
        self.runs: dict[int, str] = {}  # trial number -> run id

    def start(self, number: int, params: dict[str, Any]) -> None:
        run = self.client.create_run(
            self.experiment, run_name=f"trial-{number}",
            tags={"optuna.study": self.study, "optuna.trial": str(number)})
        self.runs[number] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=[self._param(k, str(v)[:6000])
                                                       for k, v in sorted(params.items())])

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        run = self.runs.get(number)
        if run is None:
            return
        stamp = int(time.time() * 1000)
        self.client.log_batch(run, metrics=[self._metric(k, float(v), stamp, epoch)
                                            for k, v in metrics.items() if k != "epoch"])

    def end(self, trial: FrozenTrial) -> None:
        run = self.runs.pop(trial.number, None)
        if run is None:
            return
        end = str(trial.user_attrs.get("end", trial.state.name.lower()))
        self.client.set_tag(run, "end", end)
        value = _value(trial)
        if value is not None:
            self.client.log_metric(run, "value", value)
        self.client.set_terminated(run, status=MLFLOW_STATUS.get(end, "FAILED"))

    def close(self) -> None:
        for run in self.runs.values():
            self.client.set_tag(run, "end", "interrupted")
            self.client.set_terminated(run, status="KILLED")
        self.runs.clear()


class TensorBoardTracker(Tracker):
    """``DIR/<study>/trial-00012/``: per-epoch scalars, and the trial's hparams with its final
    value when it ends (TensorBoard's HPARAMS tab compares the trials)."""

    def __init__(self, folder: str | Path, study: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs TensorBoard: pip install "
                              "'cifar-search[tensorboard]'.") from None
        self._writer = SummaryWriter
        self.root = Path(folder) / study
        self.writers: dict[int, Any] = {}
        self.params: dict[int, dict[str, Any]] = {}

    def folder(self, number: int) -> Path:
        return self.root / f"trial-{number:05d}"

    def start(self, number: int, params: dict[str, Any]) -> None:
        self.writers[number] = self._writer(log_dir=str(self.folder(number)))
        self.params[number] = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                               for k, v in params.items()}

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        writer = self.writers.get(number)
        if writer is None:
            return
        for k, v in metrics.items():
            if k != "epoch":
                writer.add_scalar(k, float(v), epoch)
        writer.flush()

    def end(self, trial: FrozenTrial) -> None:
        writer = self.writers.pop(trial.number, None)
        if writer is None:
            return
        params = self.params.pop(trial.number, {})
        end = str(trial.user_attrs.get("end", trial.state.name.lower()))
        value = _value(trial)
        curve = trial.user_attrs.get("curve") or [{}]
        final = value if value is not None else float(curve[-1].get("val_acc", float("nan")))
        writer.add_hparams({**params, "end": end}, {"hparam/val_acc": final}, run_name=".")
        writer.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def make_trackers(study: str, *, mlflow: str | None = None,
                  tensorboard: str | Path | None = None) -> Trackers:
    """The trackers the settings ask for (none: an empty, false :class:`Trackers`)."""
    out: list[Tracker] = []
    if mlflow:
        out.append(MLflowTracker(mlflow, study))
    if tensorboard:
        out.append(TensorBoardTracker(tensorboard, study))
    return Trackers(out)
