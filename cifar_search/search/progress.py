"""Progress over trials: best so far and the running trial's epoch, on one tqdm line, and an
estimate of the time left for ``--trials N`` after the first trials of a run (one process, and
``--workers``, whose starting process polls the study)."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from cifar_search.search.study import counts_toward_total
from cifar_search.train.trainer import EpochMetrics

logger = logging.getLogger(__name__)

FIRST_ESTIMATE = 3  # finished trials of a run before the first estimate of the time left


def estimate_due(finished: int, remaining_at_start: int) -> bool:
    """Whether the ``finished``-th trial of a run prints an estimate: the third, then every
    tenth of the trials the run started with to do, and never the last."""
    if finished >= remaining_at_start or finished < FIRST_ESTIMATE:
        return False
    step = max(1, remaining_at_start // 10)
    return finished == FIRST_ESTIMATE or finished % step == 0


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def estimate_line(done: int, total: int, finished_this_run: int, elapsed_s: float) -> str:
    """``done`` of ``total`` finished; the rest at this run's mean seconds a finished trial."""
    per_trial = elapsed_s / max(finished_this_run, 1)
    left = max(total - done, 0) * per_trial
    return (f"{done} of {total} trials finished; about {duration(left)} left for --trials "
            f"{total} at this run's {per_trial:.1f} s a trial (pruned trials included)")


class TimeLeft:
    """The time-left lines of one run toward ``total`` finished trials, at this run's pace.

    ``update(done)`` takes the study's finished count whenever it is read: after every trial in
    one process, at each poll with ``--workers``, where several trials may end between two
    polls. A line is due when any count passed since the last call is due
    (:func:`estimate_due`); it names the count now, and none comes once ``total`` is reached."""

    def __init__(self, total: int, initial: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.initial, self.done = total, initial, initial
        self.clock, self.start = clock, clock()

    def update(self, done: int) -> str | None:
        passed = range(self.done - self.initial + 1, done - self.initial + 1)
        self.done = max(self.done, done)
        if done >= self.total or not any(estimate_due(n, self.total - self.initial)
                                         for n in passed):
            return None
        return estimate_line(done, self.total, done - self.initial, self.clock() - self.start)


def write_estimate(bar: tqdm, line: str) -> None:
    """An estimate above the progress bar; with the bar off, as an INFO log line."""
    if bar.disable:
        logger.info(line)
    else:
        bar.write(line, file=sys.stderr)


class TrialProgress:
    """A study callback (trial ended) and an objective ``on_epoch`` hook (epoch ended).

    After the first trials of the run (:func:`estimate_due`) it estimates the time left for
    the study's ``total``, above the bar; with the bar off, as an INFO log line."""

    def __init__(self, total: int, initial: int, epochs: int, *, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bar = tqdm(total=total, initial=initial, unit="trial", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True)
        self.done = initial
        self.left = TimeLeft(total, initial, clock=clock)
        self.epochs = epochs
        self.best = math.nan
        self.current = ""
        self.estimates: list[str] = []  # every estimate printed, for whoever wants them

    def on_epoch(self, number: int, epoch: int, m: EpochMetrics) -> None:
        self.current = f"#{number} epoch {epoch}/{self.epochs} val {100 * m.val_acc:.1f}%"
        self._show()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and counts_toward_total(trial):
            self.bar.update(1)
            self.done += 1
            self._estimate()
        if trial.state == TrialState.COMPLETE and trial.values:
            v = trial.values[0]
            self.best = v if math.isnan(self.best) else max(self.best, v)
        self.current = f"#{trial.number} {trial.user_attrs.get('end', trial.state.name.lower())}"
        self._show()

    def _estimate(self) -> None:
        line = self.left.update(self.done)
        if line is None:
            return
        self.estimates.append(line)
        write_estimate(self.bar, line)

    def _show(self) -> None:
        best = "-" if math.isnan(self.best) else f"{100 * self.best:.2f}%"
        self.bar.set_postfix_str(f"best {best} | {self.current}", refresh=True)

    def close(self) -> None:
        self.bar.close()
