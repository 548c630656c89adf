"""The trainer on tiny models and a separable problem: learning, EMA, TTA, early stopping, hooks,
divergence, reproducibility. Seconds on a CPU."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from cifar_search.errors import DivergedError
from cifar_search.train.augment import BatchAugment
from cifar_search.train.config import AugmentConfig, OptimConfig, TrainConfig
from cifar_search.train.loader import DeviceLoader
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.trainer import EpochMetrics, TrainResult, evaluate, predict_logits, train

RUNTIME = resolve_runtime("cpu", "fp32")


def _data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """4 classes told apart by which channel is bright (plus noise); uint8 (n, 3, 32, 32)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randint(0, 60, (n, 3, 32, 32), generator=g)
    for c in range(3):
        x[:, c] += 150 * (y == c)[:, None, None]
    return x.clamp(0, 255).to(torch.uint8), y


def _loaders(
    batch: int = 32, augment: BatchAugment | None = None
) -> tuple[DeviceLoader, DeviceLoader]:
    train_loader = DeviceLoader(*_data(256, 0), batch, augment=augment, shuffle=True, seed=0)
    return train_loader, DeviceLoader(*_data(128, 1), 64)


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )


def _cfg(epochs: int = 3, **changes: object) -> TrainConfig:
    optim = OptimConfig(optimizer="sgd", lr=0.2, schedule="onecycle", weight_decay=5e-4)
    return TrainConfig(epochs=epochs, batch_size=32, optim=optim).replace(**changes)


def _train(
    cfg: TrainConfig, seed: int = 0, **kw: Any
) -> tuple[nn.Module, TrainResult, DeviceLoader, DeviceLoader]:
    torch.manual_seed(seed)
    model = _model()
    tl, vl = _loaders(cfg.batch_size)
    return model, train(model, cfg, tl, vl, RUNTIME, seed=seed, **kw), tl, vl


def test_learns_a_separable_problem() -> None:
    model, result, tl, vl = _train(_cfg(4))
    assert [m.epoch for m in result.history] == [1, 2, 3, 4]
    assert tl.epoch == 4
    last = result.history[-1]
    assert last.val_acc > 0.95 and last.train_acc > 0.9
    assert result.final_val_acc == last.val_acc and result.final_epoch == 4
    assert result.best_val_acc >= last.val_acc and 1 <= result.best_epoch <= 4
    assert evaluate(model, vl, RUNTIME) == pytest.approx((last.val_loss, last.val_acc))
    assert set(last.as_dict()) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                                   "lr", "seconds", "images_per_s"}
    assert last.images_per_s > 0 and result.seconds > 0 and not result.stopped_early


def test_same_seed_same_metrics() -> None:
    strip = lambda r: [(m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.lr) for m in r.history]  # noqa: E731
    a, b = _train(_cfg(2), seed=3)[1], _train(_cfg(2), seed=3)[1]
    assert strip(a) == strip(b)


def test_max_epochs_stops_early_with_the_full_schedule() -> None:
    full = _train(_cfg(4))[1]
    short = _train(_cfg(4), max_epochs=2)[1]
    assert short.epochs_run == 2 and not short.stopped_early
    assert [m.lr for m in short.history] == [m.lr for m in full.history[:2]]
    assert [m.val_loss for m in short.history] == [m.val_loss for m in full.history[:2]]


def test_hook_sees_every_epoch_and_its_exceptions_propagate() -> None:
    seen: list[tuple[int, EpochMetrics]] = []

    class Pruned(Exception):
        pass

    def hook(epoch: int, metrics: EpochMetrics) -> None:
        seen.append((epoch, metrics))
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        _train(_cfg(4), on_epoch_end=hook)
    assert [e for e, _ in seen] == [1, 2] and seen[1][1].epoch == 2


def test_divergence_raises_at_once() -> None:
    cfg = _cfg(3, optim=OptimConfig(lr=1e6, schedule="constant", momentum=0.0))
    with pytest.raises(DivergedError) as info:
        _train(cfg)
    assert info.value.epoch == 1 and not math.isfinite(info.value.loss)

    class Inf(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 10)

        def forward(self, x: Tensor) -> Tensor:
            return self.lin(x.mean((2, 3))) * math.inf

    tl, vl = _loaders()
    with pytest.raises(DivergedError) as info:
        train(Inf(), _cfg(2), tl, vl, RUNTIME, seed=0)
    assert (info.value.epoch, info.value.step) == (1, 1)


def test_ema_is_evaluated_and_copied_into_the_model() -> None:
    model, result, _, vl = _train(_cfg(3, ema_decay=0.9))
    last = result.history[-1]
    assert last.val_acc > 0.9
    assert evaluate(model, vl, RUNTIME) == pytest.approx((last.val_loss, last.val_acc))
    plain = _train(_cfg(3))[1]
    assert last.val_loss != plain.history[-1].val_loss


@pytest.mark.parametrize("tta", ["flip", "flip_translate"])
def test_tta(tta: str) -> None:
    model, result, _, vl = _train(_cfg(2, tta=tta))
    logits, labels = predict_logits(model, vl, RUNTIME, tta)  # type: ignore[arg-type]
    assert logits.shape == (128, 10) and logits.dtype == torch.float32 and labels.shape == (128,)
    loss, acc = evaluate(model, vl, RUNTIME, tta)  # type: ignore[arg-type]
    assert (loss, acc) == pytest.approx((result.history[-1].val_loss, result.history[-1].val_acc))
    assert not torch.allclose(logits, predict_logits(model, vl, RUNTIME)[0])


def test_tta_of_a_flip_invariant_model_changes_nothing() -> None:
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    _, vl = _loaders()
    base = predict_logits(model, vl, RUNTIME)[0]
    assert torch.allclose(predict_logits(model, vl, RUNTIME, "flip")[0], base, atol=1e-6)


def test_early_stopping_restores_the_best_weights() -> None:
    cfg = _cfg(12, early_stopping=2, optim=OptimConfig(lr=1e-4, schedule="constant"))
    torch.manual_seed(0)
    model = _model()
    tl, vl = _loaders()
    snapshots: dict[int, dict[str, Tensor]] = {}

    def hook(epoch: int, metrics: EpochMetrics) -> None:  # make the val loss rise after epoch 2
        snapshots[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        if epoch >= 2:
            with torch.no_grad():
                model[-1].bias.add_(torch.tensor([0.0, 0.0, 0.0, 0.0, 9, 9, 9, 9, 9, 9]))

    result = train(model, cfg, tl, vl, RUNTIME, seed=0, on_epoch_end=hook)
    assert result.stopped_early and result.epochs_run == 4
    assert result.final_epoch == 2
    assert result.final_val_loss == result.history[1].val_loss
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k


def test_no_val_loader_gives_nan_and_soft_targets_work() -> None:
    mixup = BatchAugment(AugmentConfig(crop_padding=0, flip="random", mixup_alpha=0.4))
    tl, _ = _loaders(augment=mixup)
    assert next(iter(tl))[1].shape == (32, 10)  # soft targets
    torch.manual_seed(0)
    model = _model()
    cfg = _cfg(3, early_stopping=1, optim=OptimConfig(lr=0.2, label_smoothing=0.1))
    result = train(model, cfg, tl, None, RUNTIME, seed=0)
    assert math.isnan(result.history[-1].val_acc) and math.isnan(result.final_val_acc)
    assert result.best_epoch == 0 and result.epochs_run == 3 and not result.stopped_early
    assert result.history[-1].train_acc > 0.5


def test_init_from_data_gets_raw_training_images() -> None:
    got: list[Tensor] = []

    class Whitened(nn.Sequential):
        def init_from_data(self, images: Tensor) -> None:
            got.append(images)

    torch.manual_seed(0)
    model = Whitened(*_model())
    tl, vl = _loaders()
    train(model, _cfg(1), tl, vl, RUNTIME, seed=0)
    assert len(got) == 1
    assert got[0].shape == (256, 3, 32, 32) and got[0].dtype == torch.float32
    assert torch.equal(got[0], tl.x.float() / 255.0)


def test_grad_clip_and_adam_run() -> None:
    cfg = _cfg(3, optim=OptimConfig(optimizer="adamw", lr=2e-2, grad_clip=1.0,
                                    decay_norm_and_bias=False, schedule="cosine"))
    assert _train(cfg)[1].history[-1].val_acc > 0.5


def test_compile_once_per_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    from cifar_search.train import compile_cache

    real, calls = torch.compile, []

    def eager_compile(model: nn.Module) -> nn.Module:  # dynamo without inductor: seconds
        calls.append(model)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    compile_cache.clear()
    runtime = resolve_runtime("cpu", "fp32", compile=True)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = _model()
        tl, vl = _loaders()
        results.append(train(model, _cfg(2), tl, vl, runtime, seed=0))
        assert evaluate(model, vl, RUNTIME)[1] == results[-1].history[-1].val_acc
    assert len(calls) == 1  # the second model of the same architecture reused the first's
    eager = _train(_cfg(2))[1]
    for r in results:
        assert r.history[-1].val_loss == pytest.approx(eager.history[-1].val_loss, rel=1e-4)
    compile_cache.clear()


def test_lookahead_syncs_on_its_steps_with_a_cubic_ramp() -> None:
    from cifar_search.train.trainer import Lookahead

    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    la = Lookahead(net, every=2, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(3.0)
    la.after_step(1, 1 / 4)  # not a sync step: nothing moves
    assert net.weight.tolist() == [[3.0, 3.0]] and la.slow[0].tolist() == [[1.0, 1.0]]
    la.after_step(2, 2 / 4)  # d = 0.5 * (2 / 4) ** 3 = 1 / 16: slow = 1 + (15 / 16) * 2
    assert net.weight.tolist() == [[2.875, 2.875]] == la.slow[0].tolist()
    with torch.no_grad():
        net.weight.fill_(5.0)
    la.finish()  # ends on the slow weights
    assert net.weight.tolist() == [[2.875, 2.875]]


def test_lookahead_training_learns_and_keeps_what_it_evaluated() -> None:
    model, result, _, vl = _train(_cfg(3, lookahead=5))
    assert result.history[-1].val_acc > 0.9
    assert evaluate(model, vl, RUNTIME) == pytest.approx(
        (result.history[-1].val_loss, result.history[-1].val_acc))
    plain = _train(_cfg(3))[1]
    assert result.history[-1].val_loss != plain.history[-1].val_loss
