"""The default search space, as data. Every preset of ``presets.py`` lies inside it.

Read it top to bottom: a param's ``when`` names params above it. Units are in the docs.
"""

from __future__ import annotations

from typing import Any

from cifar_search.search.params import Param, Space

FAMILIES = (
    "plain_cnn", "alexnet", "vgg", "resnet", "resnet9", "wide_resnet", "shake_shake", "airbench",
)
SGD = {"optimizer": ("sgd",)}
ADAM = {"optimizer": ("adam", "adamw")}


def cat(name: str, target: str | None, choices: tuple[Any, ...], doc: str, **kw: Any) -> Param:
    return Param(name, "categorical", target, choices=choices, doc=doc, **kw)


def num(name: str, target: str, low: float, high: float, doc: str, **kw: Any) -> Param:
    return Param(name, "float", target, low=low, high=high, doc=doc, **kw)


def integer(name: str, target: str, low: int, high: int, doc: str, **kw: Any) -> Param:
    return Param(name, "int", target, low=low, high=high, doc=doc, **kw)


def gate(name: str, field: str, off: Any, doc: str, **kw: Any) -> Param:
    return Param(name, "categorical", None, choices=(False, True), gate_field=field,
                 gate_off=off, doc=doc, **kw)


def on(gate_name: str) -> dict[str, tuple[Any, ...]]:
    return {gate_name: (True,)}


_MODEL = (
    cat("family", "model.family", FAMILIES, "model family (registry name)"),
    cat("width", "model.width", (16, 24, 32, 48, 64, 96, 128, 160),
        "channels of the first stage (WRN: 16 x widen factor)"),
    cat("depth_plain", "model.depth", ("1-1-1", "2-2-2", "3-3-3"),
        "convs per stage", when={"family": ("plain_cnn",)}, codec="tuple"),
    cat("depth_vgg", "model.depth", ("1-1-2-2-2", "2-2-3-3-3", "2-2-4-4-4"),
        "convs per stage (VGG-11 / 16 / 19)", when={"family": ("vgg",)}, codec="tuple"),
    cat("depth_resnet", "model.depth", ("1-1-1-1", "2-2-2-2", "3-4-6-3", "3-4-23-3"),
        "blocks per stage (ResNet-10 / 18 / 34 or 50 / 101)", when={"family": ("resnet",)},
        codec="tuple"),
    cat("block", "model.block", ("basic", "bottleneck"), "residual block",
        when={"family": ("resnet",)}),
    cat("depth_resnet9", "model.depth", ("0-0-0", "1-0-1", "1-1-1", "2-0-2"),
        "residual blocks after layers 1 / 2 / 3 (DavidNet: 1-0-1)",
        when={"family": ("resnet9",)}, codec="tuple"),
    cat("depth_wrn", "model.depth", ("2-2-2", "4-4-4", "6-6-6"),
        "blocks per stage (WRN-16 / 28 / 40)", when={"family": ("wide_resnet",)},
        codec="tuple"),
    cat("depth_shake", "model.depth", ("2-2-2", "4-4-4"),
        "blocks per stage (Shake-Shake 14 / 26)", when={"family": ("shake_shake",)},
        codec="tuple"),
    cat("depth_airbench", "model.depth", ("1-1-1", "2-2-2", "3-3-3"),
        "convs per group", when={"family": ("airbench",)}, codec="tuple"),
    cat("whiten_bias_epochs", "model.whiten_bias_epochs", (0, 3),
        "epochs the whitening bias trains before it is frozen (0: throughout)",
        when={"family": ("airbench",)}),
    cat("input_size", "model.input_size", (32, 28),
        "pixels the net sees: 28 = random 28-crops, centre crop at eval (RDFIA)",
        when={"family": ("alexnet", "plain_cnn")}),
    cat("hidden", "model.hidden", (0, 256, 512, 1000, 2048), "hidden dense units before the "
        "classifier", when={"family": ("plain_cnn", "alexnet", "vgg")}),
    cat("batch_norm", "model.batch_norm", (True, False), "batch norm after convs"),
    cat("bn_momentum", "model.bn_momentum", (0.1, 0.2, 0.4, 0.6),
        "BN momentum, PyTorch convention", when={"batch_norm": (True,)}),
    cat("activation", "model.activation", ("relu", "gelu", "celu", "silu"), "activation"),
    num("dropout", "model.dropout", 0.0, 0.6, "dropout probability before the classifier"),
    num("block_dropout", "model.block_dropout", 0.0, 0.3,
        "dropout probability after every stage / residual layer"),
    cat("head_scale", "model.head_scale", (1.0, 0.2, 0.125, 1 / 9), "logit multiplier"),
    cat("normalization", "model.mean", ("cifar10", "rdfia"),
        "per-channel mean/std inside the model", codec="normalization"),
)

_AUGMENT = (
    integer("crop_padding", "augment.crop_padding", 0, 4, "random-crop padding, pixels"),
    cat("padding_mode", "augment.padding_mode", ("reflect", "zeros"), "crop padding fill"),
    gate("resized_crop", "augment.resized_crop_scale", 1.0, "RandomResizedCrop on/off"),
    num("resized_crop_scale", "augment.resized_crop_scale", 0.25, 0.95,
        "smallest area fraction", when=on("resized_crop")),
    cat("flip", "augment.flip", ("none", "random", "alternating"), "horizontal flip"),
    gate("rotate", "augment.rotation", 0.0, "random rotation on/off"),
    num("rotation", "augment.rotation", 2.0, 30.0, "max degrees", when=on("rotate")),
    cat("auto_augment", "augment.auto_augment", ("none", "autoaugment", "trivialaugment"),
        "learned / trivial augmentation policy"),
    gate("use_blur", "augment.blur", 0.0, "Gaussian blur on/off"),
    num("blur", "augment.blur", 0.05, 0.5, "probability per image", when=on("use_blur")),
    gate("use_cutout", "augment.cutout", 0, "cutout on/off"),
    integer("cutout", "augment.cutout", 4, 16, "square side, pixels", when=on("use_cutout")),
    gate("use_erasing", "augment.random_erasing", 0.0, "random erasing on/off"),
    num("random_erasing", "augment.random_erasing", 0.1, 0.6, "probability per image",
        when=on("use_erasing")),
    gate("use_mixup", "augment.mixup_alpha", 0.0, "mixup on/off"),
    num("mixup_alpha", "augment.mixup_alpha", 0.05, 1.0, "Beta(a, a)", when=on("use_mixup")),
    gate("use_cutmix", "augment.cutmix_alpha", 0.0, "cutmix on/off"),
    num("cutmix_alpha", "augment.cutmix_alpha", 0.1, 1.0, "Beta(a, a)", when=on("use_cutmix")),
)

_OPTIM = (
    cat("batch_size", "batch_size", (32, 64, 128, 256, 512, 1024), "images per step"),
    cat("optimizer", "optim.optimizer", ("sgd", "adam", "adamw"), "optimiser"),
    num("lr_sgd", "optim.lr", 1e-3, 50.0, "peak learning rate per 1024 examples (scaled "
        "linearly with the batch size)", log=True, when=SGD, codec="per_1024"),
    num("lr_adam", "optim.lr", 1e-5, 0.1, "peak learning rate", log=True, when=ADAM),
    num("momentum", "optim.momentum", 0.5, 0.99, "SGD momentum / Adam beta1"),
    cat("nesterov", "optim.nesterov", (False, True), "Nesterov momentum", when=SGD),
    gate("use_weight_decay", "optim.weight_decay", 0.0, "weight decay on/off"),
    num("weight_decay", "optim.weight_decay", 1e-6, 0.1, "weight decay (PyTorch units: with "
        "the lr per 1024 examples, its decay per epoch does not change with the batch size)",
        log=True, when=on("use_weight_decay")),
    cat("decay_norm_and_bias", "optim.decay_norm_and_bias", (True, False),
        "also decay norm weights and biases", when=on("use_weight_decay")),
    cat("norm_bias_lr_scale", "optim.norm_bias_lr_scale", (1.0, 16.0, 64.0),
        "lr multiplier of norm biases, their decay per step kept (airbench: 64)",
        when={"batch_norm": (True,)}),
    cat("schedule", "optim.schedule",
        ("constant", "multistep", "exponential", "cosine", "onecycle", "cyclic"),
        "learning-rate schedule over the full epoch budget"),
    cat("milestones", "optim.milestones", ("0.5-0.75", "0.6-0.8", "0.3-0.6-0.8"),
        "multistep milestones, fractions of the budget", when={"schedule": ("multistep",)},
        codec="tuple"),
    cat("step_gamma", "optim.gamma", (0.1, 0.2, 0.5), "multistep factor",
        when={"schedule": ("multistep",)}),
    num("exp_gamma", "optim.gamma", 0.5, 0.99, "exponential factor per epoch",
        when={"schedule": ("exponential",)}),
    num("pct_start", "optim.pct_start", 0.05, 0.5, "fraction of the budget rising to the peak",
        when={"schedule": ("onecycle", "cyclic")}),
    num("div_factor", "optim.div_factor", 2.0, 5000.0, "onecycle: start at lr / this",
        log=True, when={"schedule": ("onecycle",)}),
    num("final_div_factor", "optim.final_div_factor", 1.0, 1e5, "onecycle: final divisor",
        log=True, when={"schedule": ("onecycle",)}),
    cat("anneal", "optim.anneal", ("cos", "linear"), "onecycle shape",
        when={"schedule": ("onecycle",)}),
    gate("warmup", "optim.warmup_epochs", 0.0, "linear warm-up on/off"),
    num("warmup_epochs", "optim.warmup_epochs", 0.25, 5.0, "warm-up length, epochs",
        when=on("warmup")),
    gate("use_label_smoothing", "optim.label_smoothing", 0.0, "label smoothing on/off"),
    num("label_smoothing", "optim.label_smoothing", 0.02, 0.3, "smoothing mass",
        when=on("use_label_smoothing")),
    gate("use_ema", "ema_decay", 0.0, "weight EMA on/off"),
    num("ema_decay", "ema_decay", 0.9, 0.9999, "per-step EMA decay", when=on("use_ema")),
    cat("lookahead", "lookahead", (0, 5), "steps between lookahead syncs (0: off; airbench: 5)"),
    cat("tta", "tta", ("none", "flip", "flip_translate"), "test-time augmentation at eval"),
)

DEFAULT_SPACE = Space(params=_MODEL + _AUGMENT + _OPTIM)
