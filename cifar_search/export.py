"""Exports that load without cifar-search (``torch.export`` and ONNX), and the model card.

Both take what every cifar-search model takes: **float32 images in [0, 1], NCHW, 3 x 32 x 32,
any batch size** (the batch dimension is dynamic), and return **logits** ``(batch, 10)``; apply a
softmax for probabilities. Normalisation (and the centre crop of a model trained on smaller
crops) is inside the model, so from 8-bit RGB pixels the whole preprocessing is
``x = uint8_nhwc.transpose(0, 3, 1, 2).astype("float32") / 255``. uint8 input is deliberately
not accepted: one input contract for every format, and no silent 255x scale mistakes.
Test-time augmentation (``TrainConfig.tta``) is not part of the exports.

* ``model.pt2``: ``torch.export.export`` + ``torch.export.save`` (TorchScript is deprecated);
  load with ``torch.export.load(path).module()``.
* ``model.onnx``: ``torch.onnx.export(..., dynamo=True)`` with the weights inside the file; if
  the dynamo exporter fails, the legacy TorchScript-based exporter is used and the fallback is
  noted in the result (and so in ``metrics.json``). Input ``images``, output ``logits``.

Right after writing, each file is loaded back (``torch.export.load``; ``onnxruntime``) and run on
a batch; the largest absolute logit difference from the in-memory model and the fraction of
equal argmaxes are returned, and ``retrain`` stores them in ``metrics.json``.

Example:
    >>> result = export_model(model, cfg, "runs/cifar/trial-12")  # doctest: +SKIP
    >>> result.paths["onnx"], result.checks["onnx"]["max_abs_diff"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cifar_search.config import TrainConfig
from cifar_search.errors import ConfigError

logger = logging.getLogger(__name__)

PT2 = "model.pt2"
ONNX = "model.onnx"
INPUT_NAME = "images"  # ONNX input: float32 (batch, 3, 32, 32) in [0, 1]
OUTPUT_NAME = "logits"  # ONNX output: float32 (batch, 10)
MAX_BATCH = 65536  # images; upper bound of the dynamic batch dimension
CHECK_BATCH = 16  # random images used for verification when none are given
TOLERANCE = 1e-3  # max abs logit difference counted as a faithful export


@dataclass(frozen=True)
class ExportResult:
    """Written files and how faithfully each reproduces the in-memory model."""

    paths: dict[str, Path] = field(default_factory=dict)  # "pt2" / "onnx" -> file
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # format -> diff, agreement
    notes: list[str] = field(default_factory=list)  # fallbacks and skipped steps

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": {k: p.name for k, p in self.paths.items()},
            "checks": self.checks,
            "notes": self.notes,
            "input": "float32 (batch, 3, 32, 32) RGB in [0, 1]: x = uint8 / 255",
            "output": "float32 logits (batch, 10)",
        }


def export_model(
    model: nn.Module,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    images: Tensor | None = None,
    onnx: bool = True,
) -> ExportResult:
    """Write ``model.pt2`` and ``model.onnx`` into ``out_dir`` and verify them.

    The model is copied to the CPU in float32 and eval mode first; the caller's model is left
    as it was.

    Args:
        model: A cifar-search model: float [0, 1] ``(B, 3, 32, 32)`` -> logits.
        cfg: Its config (the input size is checked against it).
        out_dir: Folder to write into (created if needed).
        images: Float [0, 1] ``(N, 3, 32, 32)`` images to verify on (default: a fixed random
            batch of :data:`CHECK_BATCH`).
        onnx: Also write the ONNX file.

    Returns:
        Paths, verification results per format and notes.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    net = net.to(memory_format=torch.contiguous_format).eval()
    x = _check_images(images)
    with torch.no_grad():
        expected = net(x).float()
    paths: dict[str, Path] = {}
    checks: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.export.export(net, (x[:2],), dynamic_shapes=({0: batch},))
    paths["pt2"] = folder / PT2
    torch.export.save(program, paths["pt2"])
    loaded = torch.export.load(paths["pt2"]).module()
    with torch.no_grad():
        checks["pt2"] = _compare(expected, loaded(x))
    if onnx:
        onnx_path = folder / ONNX
        exporter = _export_onnx(program, net, x, onnx_path, notes)
        if exporter:
            paths["onnx"] = onnx_path
            checks["onnx"] = {"exporter": exporter, **_check_onnx(onnx_path, x, expected, notes)}
    for name, check in checks.items():
        diff = check.get("max_abs_diff")
        if diff is not None and diff > TOLERANCE:
            logger.warning("%s export differs from the model by %.3g (logits)", name, diff)
    logger.info("exported %s (%s)", ", ".join(str(p) for p in paths.values()), cfg.model.family)
    return ExportResult(paths, checks, notes)


def _check_images(images: Tensor | None) -> Tensor:
    if images is None:
        g = torch.Generator().manual_seed(0)
        return torch.rand(CHECK_BATCH, 3, 32, 32, generator=g)
    x = images.detach().to("cpu", torch.float32).contiguous()
    if x.ndim != 4 or tuple(x.shape[1:]) != (3, 32, 32) or len(x) < 2:
        raise ConfigError(
            f"export check images must be (N >= 2, 3, 32, 32), got {tuple(x.shape)}."
        )
    return x


def _compare(expected: Tensor, got: Tensor | np.ndarray) -> dict[str, Any]:
    other = torch.as_tensor(np.asarray(got) if not isinstance(got, Tensor) else got).float()
    diff = float((other - expected).abs().max())
    agree = float((other.argmax(1) == expected.argmax(1)).float().mean())
    return {"max_abs_diff": diff, "argmax_agreement": agree, "images": len(expected)}


def _export_onnx(
    program: torch.export.ExportedProgram, net: nn.Module, x: Tensor, path: Path,
    notes: list[str],
) -> str:
    """Write ``path``; returns the exporter used ("dynamo" / "legacy"), "" when both failed."""
    try:
        onnx_program = torch.onnx.export(
            program, (x[:2],), None, dynamo=True, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], verbose=False,
        )
        if onnx_program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        _name_batch_dim(onnx_program)
        onnx_program.save(str(path), external_data=False)
        return "dynamo"
    except Exception as exc:  # onnxscript missing, an op without a dynamo translation, ...
        reason = _first_line(exc)
        logger.warning("dynamo ONNX export failed (%s); trying the legacy exporter", reason)
        notes.append(f"ONNX: dynamo export failed ({reason}); used the legacy exporter")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
            torch.onnx.export(net, (x[:2],), str(path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes)
        return "legacy"
    except Exception as exc:
        logger.warning("legacy ONNX export failed too: %s", exc)
        notes.append(f"ONNX: not written, the legacy exporter failed too ({type(exc).__name__})")
        path.unlink(missing_ok=True)
        return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _name_batch_dim(onnx_program: Any) -> None:
    """Call the dynamic first dimension ``batch`` everywhere (torch names it ``s0``-like)."""
    try:
        import onnx_ir as ir
    except ImportError:  # cosmetic only
        return
    graph = onnx_program.model.graph
    first = graph.inputs[0].shape[0] if graph.inputs and graph.inputs[0].shape else None
    if not isinstance(first, ir.SymbolicDim) or first.value is None:
        return
    old = first.value
    values = [*graph.inputs, *graph.outputs, *(v for node in graph for v in node.outputs)]
    for value in values:
        if value.shape is None:
            continue
        dims = [ir.SymbolicDim("batch") if isinstance(d, ir.SymbolicDim) and d.value == old
                else d for d in value.shape]
        value.shape = ir.Shape(dims)


def _check_onnx(path: Path, x: Tensor, expected: Tensor, notes: list[str]) -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        notes.append("ONNX: not verified (onnxruntime is not installed)")
        return {"max_abs_diff": None, "argmax_agreement": None, "images": 0}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    return _compare(expected, logits)


def loading_instructions(classes: list[str] | tuple[str, ...], tta: str = "none") -> str:
    """Markdown: how to run ``model.pt2``, ``model.onnx`` and ``model.safetensors`` without
    cifar-search (used by the model card ``MODEL.md``)."""
    tta_note = (
        f"\nThe reported test accuracy used test-time augmentation `{tta}` (logits averaged over "
        "flipped/shifted copies); the exports are the bare model, so average it yourself to "
        "match.\n" if tta != "none" else ""
    )
    return f"""\
## Using the model without cifar-search

Every format takes **float32 RGB images in [0, 1], NCHW, shape (batch, 3, 32, 32)** and returns
**logits (batch, 10)**; normalisation (and any centre crop) is inside the model. From 8-bit
pixels (H, W, 3) resize to 32 x 32 first (cifar-search predict uses bilinear with antialias on
the whole image, no crop), then divide by 255. Class order: {", ".join(classes)}.
{tta_note}
PyTorch (`model.pt2`, torch >= 2.6, no cifar-search needed):

```python
import numpy as np, torch
program = torch.export.load("model.pt2").module()
x = torch.from_numpy(images_uint8_nhwc).permute(0, 3, 1, 2).float() / 255
probs = program(x).softmax(1)
```

ONNX Runtime (`model.onnx`; input `{INPUT_NAME}`, output `{OUTPUT_NAME}`, dynamic batch):

```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
x = images_uint8_nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255
(logits,) = session.run(["{OUTPUT_NAME}"], {{"{INPUT_NAME}": x}})
```

safetensors (`model.safetensors` + `config.json`): the raw weights, read with
`safetensors.torch.load_file`; rebuilding the network needs its architecture, i.e. cifar-search:
`cifar_search.checkpoint.load_model_folder(folder)`, or
`cifar-search predict --model folder img.png`.
"""


def model_card(metrics: Mapping[str, Any]) -> str:
    """``MODEL.md`` of a retrained run: data, config, budget, seeds, results, how to load it.

    Args:
        metrics: What ``retrain`` writes to ``metrics.json``.
    """
    m = metrics
    cfg = m.get("config", {})
    model, optim = cfg.get("model", {}), cfg.get("optim", {})
    data, device = m.get("data", {}), m.get("device", {})
    pct = [f"{100 * a:.2f}%" for a in m.get("test_acc", [])]
    rows = "\n".join(
        f"| {seed} | {acc} | {loss:.4f} | {secs:.0f} |"
        for seed, acc, loss, secs in zip(m.get("seeds", []), pct, m.get("test_loss", []),
                                         m.get("train_seconds", []), strict=False)
    )
    exports = m.get("exports") or {}
    checks = "; ".join(
        f"{name}: max |logit diff| {c.get('max_abs_diff'):.2g}, argmax agreement "
        f"{100 * c.get('argmax_agreement'):.0f}% on {c.get('images')} test images"
        for name, c in exports.get("checks", {}).items() if c.get("max_abs_diff") is not None
    ) or "no exports written"
    notes = "".join(f"\n- {n}" for n in exports.get("notes", []))
    classes = m.get("classes", [])
    return f"""\
# {m.get("target", "model")}: CIFAR-10 classifier (cifar-search)

**Test accuracy {100 * m.get("test_acc_mean", math.nan):.2f}% ± \
{100 * m.get("test_acc_std", 0.0):.2f}** (mean ± sample standard deviation over \
{len(pct)} seed(s)), measured once per seed after the last epoch on the {data.get("test_size")} \
test images, which were used for nothing else.

## Data

- Source: `{data.get("source")}`.
- Trained on all {data.get("train_size")} training images (the search's train and validation \
split merged). There is no validation set while retraining, so early stopping is off and every \
epoch runs; the configuration was chosen by the search on its validation split.
- Augmentation (on the device, per batch): `{json.dumps(cfg.get("augment", {}))}`.

## Model and recipe

- Family `{model.get("family")}`, {m.get("n_params", 0):,} parameters, \
{m.get("flops", 0) / 1e6:.1f} MFLOPs per image; input 32 x 32 (the net sees \
{model.get("input_size")} x {model.get("input_size")}, centre-cropped inside the model).
- Optimiser `{optim.get("optimizer")}`, peak lr {optim.get("lr")}, schedule \
`{optim.get("schedule")}` over the whole budget, batch {cfg.get("batch_size")}, test-time \
augmentation `{cfg.get("tta")}`.
- The full configuration is `config.json` (`TrainConfig.to_dict()` plus `format_version`).

## Budget and seeds

- {m.get("epoch_budget")} epochs ({m.get("epoch_budget_source")}).
- Seeds {m.get("seeds")}: each a fresh initialisation, data order and augmentation. The model \
files here are seed {m.get("model_seed")}'s (the first, not the best: choosing by test accuracy \
would be a choice made on the test set); other seeds are in `seed-<s>/`.

## Results

| seed | test accuracy | test loss | training seconds |
| --- | --- | --- | --- |
{rows}

Device: {device.get("device_name")} ({device.get("precision")}); wall time \
{m.get("wall_seconds", 0.0) / 60:.1f} min for the whole retrain (all seeds, evaluation, exports).
Versions: {", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())}.
Per-class accuracy and the confusion matrix are in `metrics.json`; the first misclassified test
images are in `misclassified.npz` (`images`, `true`, `pred`, `index`).

## Files

- `model.safetensors`, `config.json`, `metrics.json`: the cifar-search model folder
  (`cifar-search predict --model THIS_FOLDER image.png`).
- `model.pt2` (torch.export) and `model.onnx`: standalone exports, checked right after writing:
  {checks}.{notes}

{loading_instructions(classes, str(cfg.get("tta", "none")))}"""
