"""Pacer: the epochs left fitted into the time left, from the training's own seconds a batch."""

from __future__ import annotations

import pytest

from cifar_search.train.pacing import Pacer


class FakeLoader:
    def __init__(self, all_batches: int, max_batches: int | None = None) -> None:
        self.all_batches, self.max_batches = all_batches, max_batches


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_slower_machine_gets_shorter_epochs_that_end_on_time() -> None:
    loader, clock = FakeLoader(50, 45), FakeClock()
    pacer = Pacer(loader, epochs=5, seconds=100.0, clock=clock)
    clock.t += 2.0 + 27.0  # 2 s of set-up, then epoch 1: 45 batches at 0.6 s (planned 0.4 s)
    assert pacer.after_epoch(1, 27.0, 45) == 29  # 71 s left / 4 epochs / 0.6 s = 29.6
    clock.t += 29 * 0.6
    cap = pacer.after_epoch(2, 29 * 0.6, 29)
    # the rest still lands on the deadline: 3 epochs of `cap` batches at 0.6 s a batch
    assert 100.0 - (clock.t - 100.0) - 3 * cap * 0.6 == pytest.approx(0.0, abs=3 * 0.6)
    assert pacer.batches_done == 45 + 29


def test_a_faster_machine_may_use_whole_epochs_but_no_more() -> None:
    loader, clock = FakeLoader(50, 40), FakeClock()
    pacer = Pacer(loader, epochs=3, seconds=200.0, clock=clock)
    clock.t += 40 * 0.5
    assert pacer.after_epoch(1, 40 * 0.5, 40) is None  # 180 s / 2 / 0.5 = 180 > 50: all of it
    assert loader.max_batches is None


def test_an_overrun_leaves_one_batch_and_the_last_epoch_is_not_touched() -> None:
    loader, clock = FakeLoader(50), FakeClock()
    pacer = Pacer(loader, epochs=2, seconds=10.0, clock=clock)
    clock.t += 30.0
    assert pacer.after_epoch(1, 30.0, 50) == 1
    loader.max_batches = 7
    assert pacer.after_epoch(2, 1.0, 1) == 7  # nothing left to pace
