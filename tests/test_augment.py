"""train.augment: every augmentation is batched, per-image, in range and reproducible."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
import torch
from datagen import make_images
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from cifar_search.errors import ConfigError
from cifar_search.train import augment as A
from cifar_search.train.config import CIFAR10_MEAN, AugmentConfig

PLAIN = AugmentConfig(crop_padding=0, flip="none")  # everything off
B = 64


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_images(B, seed=5)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y).long()


def run(
    cfg: AugmentConfig, x: torch.Tensor, y: torch.Tensor, seed: int = 0, epoch: int = 0,
    input_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return A.BatchAugment(cfg, input_size=input_size)(x, y, g, epoch)


def u8(images: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] images back to the uint8 values they came from."""
    return (images * 255).round().to(torch.uint8)


SINGLE = {  # one augmentation each, strong enough to touch every image often
    "crop_reflect": dataclasses.replace(PLAIN, crop_padding=4),
    "crop_zeros": dataclasses.replace(PLAIN, crop_padding=4, padding_mode="zeros"),
    "resized_crop": dataclasses.replace(PLAIN, resized_crop_scale=0.3),
    "flip": dataclasses.replace(PLAIN, flip="random"),
    "rotation": dataclasses.replace(PLAIN, rotation=30.0),
    "autoaugment": dataclasses.replace(PLAIN, auto_augment="autoaugment"),
    "trivialaugment": dataclasses.replace(PLAIN, auto_augment="trivialaugment"),
    "blur": dataclasses.replace(PLAIN, blur=1.0),
    "cutout": dataclasses.replace(PLAIN, cutout=8),
    "random_erasing": dataclasses.replace(PLAIN, random_erasing=1.0),
    "mixup": dataclasses.replace(PLAIN, mixup_alpha=1.0),
    "cutmix": dataclasses.replace(PLAIN, cutmix_alpha=1.0),
}


def test_plain_only_converts(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    out, target = run(PLAIN, x, y)
    torch.testing.assert_close(out, x.float() / 255)
    assert target is y


@pytest.mark.parametrize("name", list(SINGLE))
def test_changes_images_keeps_shape_range_and_reproduces(
    name: str, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    out, target = run(SINGLE[name], x, y, seed=1)
    assert out.shape == (B, 3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(u8(out), x)
    again, target_again = run(SINGLE[name], x, y, seed=1)
    assert torch.equal(out, again) and torch.equal(target, target_again)
    assert not torch.equal(out, run(SINGLE[name], x, y, seed=2)[0])


@pytest.mark.parametrize("name", [n for n in SINGLE if n not in ("mixup", "cutmix")])
def test_parameters_are_drawn_per_image(
    name: str, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """Copies of one image come out differently within a single batch."""
    x, y = batch
    copies = x[:1].expand(B, -1, -1, -1).contiguous()
    out, _ = run(SINGLE[name], copies, y.new_zeros(B), seed=3)
    distinct = {tuple(o.flatten()[::7].tolist()) for o in out}
    assert len(distinct) >= (2 if name == "flip" else 5)


def test_crop_to_smaller_input_without_padding(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    out, _ = run(PLAIN, x, y, input_size=28)  # the RDFIA net's random 28-crop
    assert out.shape == (B, 3, 28, 28)
    for i in range(4):  # each crop is a window of its image
        windows = x[i].unfold(1, 28, 1).unfold(2, 28, 1)  # (3, 5, 5, 28, 28)
        assert (windows == u8(out[i])[:, None, None]).flatten(3).all(-1).all(0).any()


def test_zero_padding_shows_black_borders(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    out, _ = run(SINGLE["crop_zeros"], x, y)
    black_rows = (out.amax(dim=(1, 3)) == 0).sum()  # rows that are all padding
    assert black_rows > 0


def test_random_flip_mirrors_about_half(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    out = u8(run(SINGLE["flip"], x, y)[0])
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < B - 10


def test_alternating_flip_is_fixed_per_image_and_inverts_each_epoch(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    cfg = dataclasses.replace(PLAIN, flip="alternating")
    e0, e1, e2 = (run(cfg, x, y, seed=s, epoch=e)[0] for s, e in ((0, 0), (1, 1), (2, 2)))
    torch.testing.assert_close(e1, e0.flip(-1))  # every image turns over on odd epochs
    torch.testing.assert_close(e2, e0)  # whatever the generator
    flipped = (u8(e0) != x).flatten(1).any(1)
    assert 10 < int(flipped.sum()) < B - 10  # a random half, per image
    part, _ = run(cfg, x[10:20], y[10:20])  # the bit belongs to the image, not the batch slot
    torch.testing.assert_close(part, e0[10:20])


def test_cutout_fills_a_square_with_the_mean_colour(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    out, _ = run(SINGLE["cutout"], x, y)
    filled = (out == torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)).all(1)  # (B, 32, 32)
    area = filled.flatten(1).sum(1)
    assert bool((area <= 64).all()) and bool((area >= 16).all())  # 8x8, clipped at borders


def test_random_erasing_follows_its_probability(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    half = dataclasses.replace(PLAIN, random_erasing=0.5)
    out, _ = run(half, x, y)
    erased = (out == torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)).all(1).flatten(1).any(1)
    assert 15 < int(erased.sum()) < B - 15


def test_blur_smooths_every_image(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    out, _ = run(SINGLE["blur"], x, y)
    def tv(t: torch.Tensor) -> torch.Tensor:
        return (t[..., 1:] - t[..., :-1]).abs().flatten(1).mean(1)
    before, after = tv(x.float() / 255), tv(out)
    assert bool((after <= before + 1e-6).all())  # sigma 0.1 px barely blurs
    assert float((after < before - 1e-3).float().mean()) > 0.7


@pytest.mark.parametrize("cfg", [
    SINGLE["mixup"], SINGLE["cutmix"],
    dataclasses.replace(PLAIN, mixup_alpha=0.4, cutmix_alpha=1.0),
])
def test_mix_targets_are_probabilities(
    cfg: AugmentConfig, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, y = batch
    for seed in range(4):
        _, target = run(cfg, x, y, seed=seed)
        assert target.shape == (B, 10) and target.dtype == torch.float32
        torch.testing.assert_close(target.sum(1), torch.ones(B))
        assert bool((target >= 0).all())


def test_cutmix_target_weight_is_the_pasted_area(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    out, target = run(SINGLE["cutmix"], x, y, seed=4)
    changed = (u8(out) != x).any(1).float().mean((1, 2))  # area from the partner
    other_class = target.max(1).values < 1
    taken = 1 - target.max(1).values  # one box for the batch: the same area for every image
    assert 0 < float(taken[other_class][0]) < 1
    assert int(((changed - taken[other_class][0]).abs() < 0.02).sum()) >= B - 3


def test_mix_prob_zero_gives_one_hot_and_untouched_images(
    batch: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = batch
    cfg = dataclasses.replace(PLAIN, mixup_alpha=1.0, cutmix_alpha=1.0, mix_prob=0.0)
    out, target = run(cfg, x, y)
    torch.testing.assert_close(out, x.float() / 255)
    torch.testing.assert_close(target, torch.nn.functional.one_hot(y, 10).float())


def test_everything_together(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    cfg = AugmentConfig(
        crop_padding=4, resized_crop_scale=0.5, flip="alternating", rotation=10.0,
        auto_augment="autoaugment", blur=0.3, cutout=8, random_erasing=0.3,
        mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.5,
    )
    out, target = run(cfg, x, y, epoch=3, input_size=28)
    assert out.shape == (B, 3, 28, 28) and target.shape == (B, 10)
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def _reference(name: str, x: torch.Tensor, m: float) -> torch.Tensor:
    """torchvision's own implementation of each AutoAugment operation."""
    shear = math.degrees(math.atan(m))
    return {
        "ShearX": lambda: TF.affine(x, 0.0, [0, 0], 1.0, [shear, 0.0], center=[0, 0]),
        "ShearY": lambda: TF.affine(x, 0.0, [0, 0], 1.0, [0.0, shear], center=[0, 0]),
        "TranslateX": lambda: TF.affine(x, 0.0, [int(m), 0], 1.0, [0.0, 0.0]),
        "TranslateY": lambda: TF.affine(x, 0.0, [0, int(m)], 1.0, [0.0, 0.0]),
        "Rotate": lambda: TF.rotate(x, m),
        "Brightness": lambda: TF.adjust_brightness(x, 1 + m),
        "Color": lambda: TF.adjust_saturation(x, 1 + m),
        "Contrast": lambda: TF.adjust_contrast(x, 1 + m),
        "Sharpness": lambda: TF.adjust_sharpness(x, 1 + m),
        "Posterize": lambda: TF.posterize(x, int(m)),
        "Solarize": lambda: TF.solarize(x, 255 * m),
    }[name]()


@pytest.mark.parametrize(("name", "magnitudes"), [
    ("ShearX", (0.3, -0.99)), ("ShearY", (0.2, -0.5)), ("TranslateX", (14.5, -9.7)),
    ("TranslateY", (3.0, -14.5)), ("Rotate", (27.0, -135.0)), ("Brightness", (0.3, -0.9)),
    ("Color", (0.3, -0.6)), ("Contrast", (0.9, -0.3)), ("Sharpness", (0.3, -0.9)),
    ("Posterize", (4.0, 7.0)), ("Solarize", (0.5, 0.11)),
])
def test_autoaugment_operations_match_torchvision(
    name: str, magnitudes: tuple[float, float], batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, _ = batch
    fn = A._OP_FNS[A.OPS.index(name)]
    magnitudes = tuple(torch.tensor(magnitudes).tolist())  # float32 values, as the policy tables
    for m in magnitudes:
        torch.testing.assert_close(fn(x, torch.full((B,), m)), _reference(name, x, m), atol=0,
                                   rtol=0)
    mixed = torch.tensor([magnitudes[i % 2] for i in range(B)])  # per-image magnitudes
    expected = torch.cat([_reference(name, x[i : i + 1], float(mixed[i])) for i in range(B)])
    torch.testing.assert_close(fn(x, mixed), expected, atol=0, rtol=0)


def _recording(fn: Callable[[Tensor, Tensor], Tensor], name: str, seen: list[str]):  # type: ignore[no-untyped-def]
    def run_op(xg: Tensor, mg: Tensor) -> Tensor:
        seen.append(name)
        return fn(xg, mg)

    return run_op


def test_policy_draws_use_every_operation(
    batch: tuple[torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _ = batch
    big = x.repeat(8, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    seen: list[str] = []
    ops = tuple(_recording(fn, n, seen) for fn, n in zip(A._OP_FNS, A.OPS, strict=True))
    monkeypatch.setattr(A, "_OP_FNS", ops)
    A.trivial_augment(big, g)
    A.auto_augment(big, g)
    assert set(A.OPS) - set(seen) <= {"Identity"}


@pytest.mark.parametrize(("change", "message"), [
    ({"crop_padding": 32}, "crop_padding must be < 32"),
    ({"blur": 1.5}, r"blur must be in \[0, 1\]"),
    ({"cutout": -1}, "cutout must be >= 0"),
])
def test_bad_configs_are_rejected(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        A.BatchAugment(dataclasses.replace(PLAIN, **change))
    with pytest.raises(ConfigError, match="input_size=40"):
        A.BatchAugment(PLAIN, input_size=40)
