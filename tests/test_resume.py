"""A training stopped after an epoch, or inside one, and resumed from its file is the same
training, bit for bit on the CPU: weights, history, every random draw. The file is written on
time, read back only for the same training, and a failed write never stops training."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_trainer import _data
from torch import Tensor, nn

from cifar_search.errors import ConfigError
from cifar_search.train.augment import BatchAugment
from cifar_search.train.config import AugmentConfig, OptimConfig, TrainConfig
from cifar_search.train.loader import DeviceLoader
from cifar_search.train.resume import Checkpoint, State, rng_state, set_rng_state, where
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.trainer import EpochMetrics, TrainResult, train

RUNTIME = resolve_runtime("cpu", "fp32")
AUG = AugmentConfig(crop_padding=4, flip="random", cutout=8, mixup_alpha=0.4, mix_prob=0.5)


class Stop(Exception):
    """What a test raises to stop a training (Ctrl-C in real use)."""


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(  # dropout: the global generator matters after a resume
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(8, 10),
    )


def _cfg(**changes: Any) -> TrainConfig:
    optim = OptimConfig(optimizer="sgd", lr=0.2, schedule="onecycle", weight_decay=5e-4,
                        label_smoothing=0.1)
    return TrainConfig(epochs=5, batch_size=32, optim=optim, augment=AUG).replace(**changes)


def _run(cfg: TrainConfig, resume: State | None = None, stop_after: int | None = None,
         ckpt: Checkpoint | None = None, on_state: Any = None, mid_epoch: bool = False,
         max_batches: int | None = None) -> tuple[nn.Module, TrainResult]:
    model = _model()
    tl = DeviceLoader(*_data(256, 0), cfg.batch_size, augment=BatchAugment(cfg.augment),
                      shuffle=True, seed=0, max_batches=max_batches)
    vl = DeviceLoader(*_data(128, 1), 64)

    def hook(epoch: int, m: EpochMetrics) -> None:
        if stop_after is not None and epoch > stop_after:
            raise Stop

    def keep(epoch: int, state: Any) -> None:
        assert ckpt is not None
        ckpt.offer(epoch, state)

    if on_state is None and ckpt is not None:
        on_state = keep
    result = train(model, cfg, tl, vl, RUNTIME, seed=3, on_epoch_end=hook, resume=resume,
                   on_state=on_state, mid_epoch=mid_epoch)
    return model, result


def _same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def _same_training(model: nn.Module, result: TrainResult, whole_model: nn.Module,
                   whole: TrainResult) -> None:
    """A resumed training ended where the one never stopped did: weights and every epoch."""
    _same_weights(model, whole_model)
    assert [m.epoch for m in result.history] == [1, 2, 3, 4, 5]
    for m, w in zip(result.history, whole.history, strict=True):
        assert (m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.lr) == (
            w.train_loss, w.train_acc, w.val_loss, w.val_acc, w.lr)


@pytest.mark.parametrize("changes", [
    {},
    {"ema_decay": 0.9},
    {"lookahead": 3},
    {"early_stopping": 10},
])
def test_a_stopped_training_resumed_from_its_file_is_the_same_training(
        tmp_path: Path, changes: dict[str, Any]) -> None:
    cfg = _cfg(**changes)
    whole_model, whole = _run(cfg)
    ckpt = Checkpoint(tmp_path / "seed-3.pt", {"seed": 3}, every_s=0)
    with pytest.raises(Stop):  # stopped inside epoch 3's hook: the file holds epoch 2
        _run(cfg, ckpt=ckpt, stop_after=2)
    saved = Checkpoint(tmp_path / "seed-3.pt", {"seed": 3}).load()
    assert saved is not None and saved["epoch"] == 2
    model, result = _run(cfg, resume=saved["train"])
    _same_training(model, result, whole_model, whole)
    assert result.best_epoch == whole.best_epoch and result.final_epoch == whole.final_epoch


def _stopped_inside(cfg: TrainConfig, path: Path, epoch: int, step: int) -> State:
    """The resume file of a training stopped (Ctrl-C) right after the state taken after step
    ``step`` of epoch ``epoch`` was written; every state is written (no timing)."""
    ckpt = Checkpoint(path, {"seed": 3}, every_s=0)

    def keep(done: int, state: Any) -> None:
        ckpt.offer(done, state)
        inside = torch.load(path, weights_only=True)["train"]["partial"]
        if inside is not None and (inside["epoch"], inside["step"]) == (epoch, step):
            raise Stop

    with pytest.raises(Stop):
        _run(cfg, on_state=keep, mid_epoch=True)
    saved = Checkpoint(path, {"seed": 3}).load()
    assert saved is not None and saved["epoch"] == epoch - 1
    return saved


@pytest.mark.parametrize("changes", [
    {},
    {"ema_decay": 0.9},
    {"lookahead": 3},
])
def test_a_training_stopped_inside_an_epoch_goes_on_from_the_next_batch(
        tmp_path: Path, changes: dict[str, Any]) -> None:
    """Augmentation draws (crop, flip, cutout, mixup), dropout, the schedule's position, EMA
    and lookahead, and the epoch's loss and accuracy, which span the stop: all as if it never
    stopped, bit for bit."""
    cfg = _cfg(**changes)
    whole_model, whole = _run(cfg)
    saved = _stopped_inside(cfg, tmp_path / "seed-3.pt", epoch=3, step=3)
    assert saved["train"]["partial"]["batches"] == 8  # 256 images, 32 a batch: stopped mid-way
    model, result = _run(cfg, resume=saved["train"])
    _same_training(model, result, whole_model, whole)


def test_a_state_inside_an_epoch_needs_the_batch_cap_it_was_taken_with(tmp_path: Path) -> None:
    saved = _stopped_inside(_cfg(), tmp_path / "s.pt", epoch=2, step=1)
    with pytest.raises(ConfigError, match="epoch 2 of 8 batches, but epoch 2 has 4"):
        _run(_cfg(), resume=saved["train"], max_batches=4)


def test_mid_epoch_states_need_a_loader_that_can_seek() -> None:
    class Batches(list[tuple[Tensor, Tensor]]):
        def set_epoch(self, epoch: int) -> None: ...

    x, y = _data(64, 0)
    loader = Batches([(x[:32].float() / 255, y[:32])])
    with pytest.raises(ConfigError, match=r"mid_epoch needs a loader .* not Batches"):
        train(_model(), _cfg(epochs=1), loader, None, RUNTIME, seed=0,
              on_state=lambda e, s: None, mid_epoch=True)


def test_mid_epoch_states_are_offered_after_every_step_but_an_epochs_last() -> None:
    offered: list[tuple[int, int | None]] = []

    def keep(done: int, state: Any) -> None:
        inside = state()["partial"]
        offered.append((done, None if inside is None else inside["step"]))

    tl = DeviceLoader(*_data(96, 0), 32, shuffle=True, seed=0)  # 3 batches an epoch
    train(_model(), _cfg(epochs=2, augment=AugmentConfig()), tl, None, RUNTIME, seed=0,
          on_state=keep, mid_epoch=True)
    assert offered == [(0, 1), (0, 2), (1, None), (1, 1), (1, 2)]


def test_the_state_is_offered_after_every_epoch_but_the_last(tmp_path: Path) -> None:
    offered: list[int] = []
    model = _model()
    tl = DeviceLoader(*_data(64, 0), 32, shuffle=True, seed=0)
    train(model, _cfg(epochs=3, augment=AugmentConfig()), tl, None, RUNTIME, seed=0,
          on_state=lambda epoch, state: offered.append(epoch))
    assert offered == [1, 2]


def test_a_resume_at_the_last_saved_epoch_skips_the_data_init(tmp_path: Path) -> None:
    """``init_from_data`` (airbench's whitening) is not run again: the weights hold it."""
    calls: list[int] = []

    class Whitened(nn.Sequential):
        def init_from_data(self, images: Tensor) -> None:
            calls.append(len(images))

    cfg = _cfg(epochs=2, augment=AugmentConfig())
    tl = DeviceLoader(*_data(64, 0), 32, shuffle=True, seed=0)
    net = Whitened(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    states: list[State] = []
    train(net, cfg, tl, None, RUNTIME, seed=0, on_state=lambda e, s: states.append(s()))
    assert calls == [64]
    train(net, cfg, tl, None, RUNTIME, seed=0, resume=states[0])
    assert calls == [64]


def test_rng_state_round_trips_every_generator() -> None:
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_offer_writes_only_when_its_interval_has_passed(tmp_path: Path) -> None:
    now = [0.0]
    ckpt = Checkpoint(tmp_path / "s.pt", {"seed": 0}, every_s=60, clock=lambda: now[0])
    built: list[int] = []

    def state() -> State:
        built.append(1)
        return {"x": torch.ones(2)}

    now[0] = 59.0
    assert not ckpt.offer(1, state) and not ckpt.path.exists() and not built
    now[0] = 61.0
    assert ckpt.offer(2, state, {"images_run": [10, 10]}) and built == [1]
    now[0] = 100.0
    assert not ckpt.offer(3, state)
    saved = ckpt.load()
    assert saved is not None and saved["epoch"] == 2 and saved["extra"] == {
        "images_run": [10, 10]}
    assert torch.equal(saved["train"]["x"], torch.ones(2))


def test_a_file_of_another_training_is_ignored_and_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.pt"
    Checkpoint(path, {"config": {"epochs": 8, "lr": 0.1}, "seed": 0}).save(3, {})
    with caplog.at_level(logging.WARNING):
        again = Checkpoint(path, {"config": {"epochs": 10, "lr": 0.1}, "seed": 0}).load()
    assert again is None
    assert "config.epochs: 8 != 10" in caplog.text and path.exists()


def test_an_unreadable_file_is_ignored_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.pt"
    path.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert Checkpoint(path, {}).load() is None
    assert "unreadable" in caplog.text and str(path) in caplog.text


def test_a_failed_write_is_logged_and_training_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")  # the checkpoint's folder cannot be made under a file
    ckpt = Checkpoint(blocker / "resume" / "s.pt", {}, every_s=0)
    with caplog.at_level(logging.WARNING):
        assert not ckpt.offer(1, lambda: {})
    assert "could not save" in caplog.text


def test_clear_removes_the_file_and_its_empty_folder(tmp_path: Path) -> None:
    a = Checkpoint(tmp_path / "resume" / "seed-0.pt", {})
    b = Checkpoint(tmp_path / "resume" / "seed-1.pt", {})
    a.save(1, {})
    b.save(1, {})
    a.clear()
    assert not a.path.exists() and b.path.exists()
    b.clear()
    assert not (tmp_path / "resume").exists()


def test_where_names_the_epoch_or_the_batch_a_training_goes_on_from(tmp_path: Path) -> None:
    saved = _stopped_inside(_cfg(), tmp_path / "s.pt", epoch=2, step=5)
    assert where(saved, 5) == "in epoch 2 of 5, after batch 5 of 8"
    assert where({"epoch": 2, "train": {"partial": None}}, 5) == "after epoch 2 of 5"
    assert where({"epoch": 2, "train": {}}, 5) == "after epoch 2 of 5"  # a format 1 file
