"""The seed write-ups (``docs/SEEDS.md``) and airbench94 as named, complete ``TrainConfig``\\ s.

A preset can be trained alone (``cifar-search train --preset davidnet``), retrained, or enqueued
to warm-start a study; every preset lies inside the default search space. Learning rates and
weight decays are in PyTorch units (mean loss over the batch) at the preset's batch size.

| preset | model | params | recipe | published |
| --- | --- | --- | --- | --- |
| ``ensta-cnn`` | plain CNN 32/64/128 x2 | 307,946 | Adam, multistep, 125 ep | val loss 0.45 |
| ``shake-shake-26`` | Shake-Shake 26 2x64d | 11,653,978 | SGD, cosine, 1800 ep | 96.03% |
| ``rdfia-alexnet`` | RDFIA conv5x5 net | 1,191,330 | SGD, exponential 0.95 | none stated |
| ``resnet18/34/50`` | CIFAR ResNet | 11.2M / 21.3M / 23.5M | SGD, cosine, 200 ep | curves |
| ``davidnet`` | ResNet-9 (Myrtle) | 6,573,120 | SGD, triangular, 20 ep | 94.1% |
| ``era-custom-resnet`` | ResNet-9 + dropout | 6,573,120 | Adam, one-cycle, 24 ep | 90.31% |
| ``fast94`` | airbench94 net | 1,972,792 | SGD, one-cycle, 10 ep | 94.01% in 3.29 s |
"""

from __future__ import annotations

from dataclasses import dataclass

from cifar_search.errors import ConfigError
from cifar_search.train.config import AugmentConfig, Block, ModelConfig, OptimConfig, TrainConfig

RDFIA_MEAN = (0.491, 0.482, 0.447)  # RDFIA TME 5-6's rounded CIFAR-10 statistics, [0, 1] scale
RDFIA_STD = (0.202, 0.199, 0.201)


@dataclass(frozen=True)
class Preset:
    """A named configuration with where it comes from and what its source reported."""

    name: str
    config: TrainConfig
    source: str  # the write-up
    published: str  # the result it reports, as stated
    notes: str  # how the recipe was mapped onto TrainConfig, and what could not be


def _resnet(name: str, depth: tuple[int, ...], block: Block, published: str) -> Preset:
    return Preset(
        name=name,
        config=TrainConfig(
            model=ModelConfig(family="resnet", width=64, depth=depth, block=block),
            augment=AugmentConfig(crop_padding=4, padding_mode="zeros", flip="random"),
            optim=OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                              schedule="cosine"),
            epochs=200,
            batch_size=128,
        ),
        source='"30 days of DL fundamentals": ResNet for CIFAR-10/100 (Kuang Liu layout)',
        published=published,
        notes="The usual pytorch-cifar recipe: SGD lr 0.1 at batch 128, momentum 0.9, weight "
        "decay 5e-4, cosine over 200 epochs, RandomCrop(32, padding=4) + flip. The write-up "
        "also trains without batch norm (model.batch_norm = false).",
    )


_PRESETS: tuple[Preset, ...] = (
    Preset(
        name="ensta-cnn",
        config=TrainConfig(
            model=ModelConfig(family="plain_cnn", width=32, depth=(2, 2, 2), dropout=0.3,
                              block_dropout=0.2),
            augment=AugmentConfig(crop_padding=4, padding_mode="zeros", flip="random",
                                  rotation=15.0),
            optim=OptimConfig(optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0,
                              schedule="multistep", milestones=(0.6, 0.8), gamma=0.5),
            epochs=125,
            batch_size=32,
            early_stopping=20,
        ),
        source="ENSTA ROB313 TP3 (PyTorch)",
        published="minimum validation loss 0.45 (accuracy not stated)",
        notes="Milestones at epochs 75 and 100 of 125 are fractions 0.6 and 0.8. The dropout "
        "rates (0.2 after each stage, 0.3 before the dense layer) and the early-stopping "
        "patience (20 epochs) are not given in the write-up. The default search space has no "
        "early_stopping parameter, so an enqueued ensta-cnn trial runs without it.",
    ),
    Preset(
        name="shake-shake-26",
        config=TrainConfig(
            model=ModelConfig(family="shake_shake", width=64, depth=(4, 4, 4)),
            augment=AugmentConfig(crop_padding=4, padding_mode="zeros", flip="random",
                                  auto_augment="autoaugment", cutout=16),
            optim=OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
                              schedule="cosine"),
            epochs=1800,
            batch_size=64,
        ),
        source="ENSTA ROB313 TP3 (PyTorch), after Gastaldi 2017 and AutoAugment",
        published="96.03% test after 1800 epochs",
        notes="Gastaldi's SGD lr 0.2 at batch 128 (wd 1e-4, cosine without restarts) scaled "
        "linearly to 0.1 at batch 64. Cutout 16 px and the CIFAR-10 AutoAugment policy.",
    ),
    Preset(
        name="rdfia-alexnet",
        config=TrainConfig(
            model=ModelConfig(family="alexnet", width=32, depth=(1, 1, 1), hidden=1000,
                              dropout=0.25, input_size=28, mean=RDFIA_MEAN, std=RDFIA_STD),
            augment=AugmentConfig(crop_padding=0, flip="random"),
            optim=OptimConfig(optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=0.0,
                              schedule="exponential", gamma=0.95),
            epochs=30,
            batch_size=64,
            tta="flip",
        ),
        source="RDFIA TME 5-6 (Sorbonne)",
        published="none stated (the TME asks for each improvement's gain)",
        notes="The final step of the TME: normalisation with its statistics, random 28x28 crops "
        "without padding + flip (centre crop 28 at test, inside the model), SGD momentum 0.9 "
        "with ExponentialLR(0.95) stepped per epoch, dropout before fc5, BN after every conv. "
        "The TME states none of lr, batch size, dropout rate or epochs; lr 0.02, batch 64, "
        "dropout 0.25 and flip TTA at evaluation were picked on the validation split "
        "(10,000 images, 5 epochs, CPU; bench/RESULTS.md): dropout 0.5 and batch 128 at lr "
        "0.05 reached 55.0% there, this 60.6%.",
    ),
    _resnet("resnet18", (2, 2, 2, 2), "basic",
            "curves only, no final number (pytorch-cifar README: ResNet-18 93.02%)"),
    _resnet("resnet34", (3, 4, 6, 3), "basic", "curves only, no final number"),
    _resnet("resnet50", (3, 4, 6, 3), "bottleneck",
            "curves only, no final number (pytorch-cifar README: ResNet-50 93.62%)"),
    Preset(
        name="davidnet",
        config=TrainConfig(
            model=ModelConfig(family="resnet9", width=64, depth=(1, 0, 1), head_scale=0.125),
            augment=AugmentConfig(crop_padding=4, padding_mode="reflect", flip="random",
                                  cutout=8, mixup_alpha=0.2),
            optim=OptimConfig(optimizer="sgd", lr=0.4, momentum=0.9, nesterov=True,
                              weight_decay=5e-4, schedule="cyclic", pct_start=0.25),
            epochs=20,
            batch_size=512,
        ),
        source='EVA4 Assignment 14: ResNet-9 / DavidNet after Myrtle "How to train your ResNet"',
        published="94.1% test in 20 epochs (416 s on a Colab GPU); Myrtle: 94% in 24 epochs",
        notes="The published 20-epoch recipe. Myrtle writes lr 0.4 / 512 and weight decay "
        "5e-4 x 512 on a summed loss; on a mean loss that is lr 0.4 and weight decay 5e-4. The "
        "triangle rises to 0.4 over the first 5 epochs (Myrtle's 5 of 24; pct_start 0.25 of "
        "20) and falls to 0. Mixup alpha 0.2 is our choice (the write-up gives none).",
    ),
    Preset(
        name="era-custom-resnet",
        config=TrainConfig(
            model=ModelConfig(family="resnet9", width=64, depth=(1, 0, 1), block_dropout=0.05),
            augment=AugmentConfig(crop_padding=0, flip="random", resized_crop_scale=0.75,
                                  cutout=8),
            optim=OptimConfig(optimizer="adam", lr=4.65e-2, momentum=0.9, weight_decay=1e-4,
                              schedule="onecycle", pct_start=0.208, div_factor=2000.0,
                              final_div_factor=100.0, anneal="linear"),
            epochs=24,
            batch_size=512,
        ),
        source="ERA V1 Session 10 (custom ResNet)",
        published="90.31% test in 24 epochs",
        notes="max_lr 4.65e-2 came from the write-up's LR range test (cifar-search lr-find). "
        "Albumentations RandomResizedCrop's scale is not stated: 0.75 here. Dropout 0.05 after "
        "every layer, Adam weight decay 1e-4 and final_div_factor 100 are the usual ERA "
        "values, not stated in the write-up. ERA orders conv-pool-bn-relu; the resnet9 "
        "family uses DavidNet's conv-bn-relu-pool (same parameters).",
    ),
    Preset(
        name="fast94",
        config=TrainConfig(
            model=ModelConfig(family="airbench", width=64, depth=(2, 2, 2), activation="gelu",
                              bn_momentum=0.4, head_scale=1 / 9, whiten_bias_epochs=3),
            augment=AugmentConfig(crop_padding=2, padding_mode="reflect", flip="alternating"),
            optim=OptimConfig(optimizer="sgd", lr=1.5, momentum=0.85, nesterov=True,
                              weight_decay=0.0153 / 11.5, schedule="onecycle", pct_start=0.23,
                              div_factor=5.0, final_div_factor=0.2 / 0.07, anneal="linear",
                              label_smoothing=0.2, norm_bias_lr_scale=64.0),
            epochs=10,
            batch_size=1024,
            lookahead=5,
            tta="flip_translate",
        ),
        source="KellerJordan/cifar10-airbench, airbench94.py",
        published="94.01% mean test accuracy (n=1000) in 3.29 s on one A100, with TTA",
        notes="airbench's lr 11.5 per 1024 examples at momentum 0.85 on a summed loss is "
        "11.5 / (1 + 1 / 0.15) = 1.5 in PyTorch units; its decoupled weight decay 0.0153 is "
        "0.0153 / 11.5 = 1.33e-3. Its triangle (0.2 -> 1 at 23% -> 0.07) is onecycle linear, "
        "div 5, final div 0.2 / 0.07; 9.9 epochs round to 10. Its bias_scaler 64 is "
        "norm_bias_lr_scale, its lookahead every 5 steps (decay 0.95^5 x progress^3) is "
        "lookahead 5, and its whitening bias trains for 3 epochs (whiten_bias_epochs).",
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)}).")
    return PRESETS[name]


def list_presets() -> list[str]:
    """Preset names in the order of ``docs/SEEDS.md``."""
    return list(PRESETS)
