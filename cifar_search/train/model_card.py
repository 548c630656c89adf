"""The model card ``MODEL.md`` of a retrained run: data, recipe, seeds, results, files.

The card gives one test accuracy per way of running the model, and names the file that
reproduces it: with test-time augmentation (``tta`` ``flip`` / ``flip_translate``) the headline
is the TTA accuracy, reproduced by ``model_tta.onnx`` / ``model_tta.pt2`` and by
``cifar-search predict``; the one-view accuracy beside it is what ``model.onnx`` / ``model.pt2``
(and ``predict --tta none``) give. Without TTA both are the same number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from cifar_search.train.export import INPUT_NAME, ONNX, ONNX_TTA, OUTPUT_NAME, PT2, PT2_TTA


def loading_instructions(classes: list[str] | tuple[str, ...], tta: str = "none") -> str:
    """Markdown: how to run the exports and ``model.safetensors`` without cifar-search."""
    onnx, pt2 = (ONNX_TTA, PT2_TTA) if tta != "none" else (ONNX, PT2)
    tta_note = (
        f"\nThe headline test accuracy used test-time augmentation `{tta}` (logits averaged "
        f"over flipped/shifted copies). `{ONNX_TTA}` and `{PT2_TTA}` do that averaging inside "
        f"and reproduce it, so the examples load them; `{ONNX}` and `{PT2}` are the bare "
        "network, one view per image, and give the single-view accuracy. Both take the same "
        "input.\n" if tta != "none" else ""
    )
    return f"""\
## Using the model without cifar-search

Every format takes **float32 RGB images in [0, 1], NCHW, shape (batch, 3, 32, 32)** and returns
**logits (batch, 10)**; normalisation (and any centre crop) is inside the model. From 8-bit
pixels (H, W, 3) resize to 32 x 32 first (cifar-search predict uses bilinear with antialias on
the whole image, no crop), then divide by 255. Class order: {", ".join(classes)}.
{tta_note}
PyTorch (`{pt2}`, torch >= 2.6, no cifar-search needed):

```python
import numpy as np, torch
program = torch.export.load("{pt2}").module()
x = torch.from_numpy(images_uint8_nhwc).permute(0, 3, 1, 2).float() / 255
probs = program(x).softmax(1)
```

ONNX Runtime (`{onnx}`; input `{INPUT_NAME}`, output `{OUTPUT_NAME}`, dynamic batch):

```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("{onnx}", providers=["CPUExecutionProvider"])
x = images_uint8_nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255
(logits,) = session.run(["{OUTPUT_NAME}"], {{"{INPUT_NAME}": x}})
```

safetensors (`model.safetensors` + `config.json`): the raw weights, read with
`safetensors.torch.load_file`; rebuilding the network needs its architecture, i.e. cifar-search:
`cifar_search.train.checkpoint.load_model_folder(folder)`, or
`cifar-search predict --model folder img.png`.
"""


def headline(m: Mapping[str, Any]) -> str:
    """The card's first paragraph: the test accuracy, and which file gives it."""
    tta = str(m.get("config", {}).get("tta", "none"))
    test_size = m.get("data", {}).get("test_size")
    seeds = len(m.get("test_acc", []))
    tta_acc = _pm(m.get("test_acc_mean", math.nan), m.get("test_acc_std", 0.0))
    when = (f"(mean ± sample standard deviation over {seeds} seed(s)), measured once per seed "
            f"after the last epoch on the {test_size} test images, which were used for nothing "
            "else.")
    exported = bool(m.get("exports"))  # retrain --no-export writes no model*.onnx / .pt2
    if tta == "none":
        files = f" Reproduced by `{ONNX}` and `{PT2}`." if exported else ""
        return f"**Test accuracy {tta_acc}** {when}{files}{_precision_note(m)}"
    if "test_acc_single_mean" not in m:  # a run from before single-view accuracy was kept
        return (f"**Test accuracy {tta_acc}** with test-time augmentation `{tta}` {when}"
                f"{_precision_note(m)}")
    single = _pm(m["test_acc_single_mean"], m.get("test_acc_single_std", 0.0))
    tta_files = f"`{ONNX_TTA}`, `{PT2_TTA}`, " if exported else ""
    one_files = f"`{ONNX}`, `{PT2}`, " if exported else ""
    return (f"**Test accuracy {tta_acc} with test-time augmentation `{tta}`** ({tta_files}"
            f"`cifar-search predict`); **{single} with one view per image** ({one_files}"
            f"`predict --tta none`) {when}{_precision_note(m)}")


def model_card(metrics: Mapping[str, Any]) -> str:
    """``MODEL.md`` of a retrained run: data, config, budget, seeds, results, how to load it.

    Args:
        metrics: What ``retrain`` writes to ``metrics.json``.
    """
    m = metrics
    cfg = m.get("config", {})
    model, optim = cfg.get("model", {}), cfg.get("optim", {})
    data, device = m.get("data", {}), m.get("device", {})
    tta = str(cfg.get("tta", "none"))
    pct = [f"{100 * a:.2f}%" for a in m.get("test_acc", [])]
    single = [f"{100 * a:.2f}%" for a in m.get("test_acc_single", [])] or ["?"] * len(pct)
    rows = "\n".join(
        f"| {seed} | {acc} | {one} | {loss:.4f} | {secs:.0f} |"
        for seed, acc, one, loss, secs in zip(m.get("seeds", []), pct, single,
                                              m.get("test_loss", []), m.get("train_seconds", []),
                                              strict=False)
    )
    exports = m.get("exports") or {}
    checks = "; ".join(
        f"{name}: max |logit diff| {c.get('max_abs_diff'):.2g}, argmax agreement "
        f"{100 * c.get('argmax_agreement'):.0f}% on {c.get('images')} test images"
        for name, c in exports.get("checks", {}).items() if c.get("max_abs_diff") is not None
    ) or "no exports written"
    notes = "".join(f"\n- {n}" for n in exports.get("notes", []))
    tta_files = (f"\n- `{PT2_TTA}` and `{ONNX_TTA}`: the same network with its test-time "
                 f"augmentation `{tta}` inside (same input and output); they give the TTA "
                 f"accuracy, `{PT2}` / `{ONNX}` the single-view one." if tta != "none" else "")
    subset = (f"\n- Each epoch saw {data['epoch_images']:,} of them, a new random subset every "
              "epoch (the epochs that fit a time budget, fractional epochs spread evenly)."
              if data.get("epoch_images") else "")
    run = data.get("epoch_images_run") or []
    if run and data.get("paced"):
        subset = ("\n- Paced to a time budget: after each epoch the images of the epochs left "
                  "were fitted into the time left (a new random subset every epoch): "
                  + ", ".join(f"{n:,}" for n in run) + " images.")
    return f"""\
# {m.get("target", "model")}: CIFAR-10 classifier (cifar-search)

{headline(m)}

## Data

- Source: `{data.get("source")}`.
- Trained on all {data.get("train_size")} training images (the search's train and validation \
split merged). There is no validation set while retraining, so early stopping is off and every \
epoch runs; the configuration was chosen by the search on its validation split.{subset}
- Augmentation (on the device, per batch): `{json.dumps(cfg.get("augment", {}))}`.

## Model and recipe

- Family `{model.get("family")}`, {m.get("n_params", 0):,} parameters, \
{m.get("flops", 0) / 1e6:.1f} MFLOPs per image; input 32 x 32 (the net sees \
{model.get("input_size")} x {model.get("input_size")}, centre-cropped inside the model).
- Optimiser `{optim.get("optimizer")}`, peak lr {optim.get("lr")}, schedule \
`{optim.get("schedule")}` over the whole budget, batch {cfg.get("batch_size")}, test-time \
augmentation `{tta}`.
- The full configuration is `config.json` (`TrainConfig.to_dict()` plus `format_version`).

## Budget and seeds

- {m.get("epoch_budget")} epochs ({m.get("epoch_budget_source")}).
- Seeds {m.get("seeds")}: each a fresh initialisation, data order and augmentation. The model \
files here are seed {m.get("model_seed")}'s (the first, not the best: choosing by test accuracy \
would be a choice made on the test set); other seeds are in `seed-<s>/`.

## Results

| seed | test accuracy (TTA `{tta}`) | one view | test loss | training seconds |
| --- | --- | --- | --- | --- |
{rows}

Device: {device.get("device_name")} ({device.get("precision")}); wall time \
{m.get("wall_seconds", 0.0) / 60:.1f} min for the whole retrain (all seeds, evaluation, exports).
Versions: {", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())}.
Per-class accuracy and the confusion matrix (with TTA `{tta}`) are in `metrics.json`; the first
misclassified test images are in `misclassified.npz` (`images`, `true`, `pred`, `index`).

## Files

- `model.safetensors`, `config.json`, `metrics.json`: the cifar-search model folder
  (`cifar-search predict --model THIS_FOLDER image.png`; with TTA `{tta}` unless `--tta none`).
- `{PT2}` (torch.export) and `{ONNX}`: standalone exports of the bare network, one view per
  image.{tta_files}
- Every export was checked right after writing: {checks}.{notes}

{loading_instructions(m.get("classes", []), tta)}"""


def _precision_note(m: Mapping[str, Any]) -> str:
    """Mixed precision moves a few borderline images: say so where the exports are float32."""
    precision = m.get("device", {}).get("precision", "fp32")
    if precision == "fp32":
        return ""
    return (f" The test images were evaluated under {precision} autocast, like the training; "
            "the float32 exports and `predict` can differ on a few borderline images.")


def _pm(mean: float, std: float) -> str:
    return f"{100 * mean:.2f}% ± {100 * std:.2f}"
