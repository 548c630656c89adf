"""search.progress: the time-left estimate after the first trials of a run, on a real study."""

from __future__ import annotations

import logging

import optuna
import pytest

from cifar_search.search.progress import (
    TimeLeft,
    TrialProgress,
    duration,
    estimate_due,
    estimate_line,
)


def test_estimates_come_after_three_trials_then_every_tenth_never_at_the_end() -> None:
    due = [n for n in range(1, 201) if estimate_due(n, 200)]
    assert due == [3, 20, 40, 60, 80, 100, 120, 140, 160, 180]
    assert [n for n in range(1, 6) if estimate_due(n, 5)] == [3, 4]
    assert not any(estimate_due(n, 3) for n in range(1, 4))


def test_the_line_says_how_long_at_this_runs_pace() -> None:
    line = estimate_line(done=13, total=200, finished_this_run=3, elapsed_s=36.0)
    assert line == ("13 of 200 trials finished; about 37 min left for --trials 200 at this "
                    "run's 12.0 s a trial (pruned trials included)")
    assert [duration(s) for s in (45, 600, 3 * 3600 + 300)] == ["45 s", "10 min", "3 h 05 min"]


def test_a_real_study_logs_its_estimates(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = TrialProgress(total=12, initial=2, epochs=1, enabled=False,
                             clock=lambda: now[0])
    study = optuna.create_study()

    def objective(trial: optuna.Trial) -> float:
        now[0] += 30.0  # every trial takes 30 s of the fake clock
        return trial.suggest_float("x", 0, 1)

    with caplog.at_level(logging.INFO, logger="cifar_search.search.progress"):
        study.optimize(objective, n_trials=9, callbacks=[progress])
    progress.close()
    assert progress.estimates[0] == ("5 of 12 trials finished; about 4 min left for --trials "
                                     "12 at this run's 30.0 s a trial (pruned trials included)")
    assert progress.estimates == [estimate_line(2 + n, 12, n, 30.0 * n) for n in range(3, 10)]
    assert [r.getMessage() for r in caplog.records
            if r.name == "cifar_search.search.progress"] == progress.estimates


def test_time_left_polled_names_the_count_now_when_a_due_count_was_passed() -> None:
    # --workers reads the study once a second: several trials can end between two reads.
    # 30 trials to do in this run: estimates are due after its 3rd, 6th, 9th, ... (not the 30th)
    now = [0.0]
    left = TimeLeft(total=40, initial=10, clock=lambda: now[0])
    now[0] = 20.0
    assert left.update(12) is None  # 2 of this run's trials: before the first estimate
    now[0] = 50.0
    assert left.update(15) == estimate_line(15, 40, 5, 50.0)  # passed the 3rd: says 15 now
    assert left.update(15) is None  # nothing new finished
    assert left.update(14) is None  # a lower count read back does not go back
    now[0] = 60.0
    assert left.update(16) == estimate_line(16, 40, 6, 60.0)
    assert left.update(17) is None  # the 7th is not due
    assert left.update(40) is None  # due counts passed, but the study is done: no estimate
