"""Exports that load without cifar-search (``torch.export`` and ONNX), plain and with TTA.

Both take what every cifar-search model takes: **float32 images in [0, 1], NCHW, 3 x 32 x 32,
any batch size** (the batch dimension is dynamic), and return **logits** ``(batch, 10)``; apply a
softmax for probabilities. Normalisation (and the centre crop of a model trained on smaller
crops) is inside the model, so from 8-bit RGB pixels the whole preprocessing is
``x = uint8_nhwc.transpose(0, 3, 1, 2).astype("float32") / 255``. uint8 input is deliberately
not accepted: one input contract for every format, and no silent 255x scale mistakes.

The plain exports are the bare network, one view per image. When the config has test-time
augmentation (``TrainConfig.tta`` ``flip`` or ``flip_translate``), ``model_tta.pt2`` and
``model_tta.onnx`` are the same network wrapped in
:class:`~cifar_search.train.evaluation.TTAModel`: same input and output, the views built and
averaged inside, exactly as the reported (TTA) test accuracy was measured. Every file is written
atomically (:mod:`cifar_search.atomic`).

* ``model.pt2``: ``torch.export.export`` + ``torch.export.save`` (TorchScript is deprecated);
  load with ``torch.export.load(path).module()``.
* ``model.onnx``: ``torch.onnx.export(..., dynamo=True)`` with the weights inside the file; if
  the dynamo exporter fails, the legacy TorchScript-based exporter is used and the fallback is
  noted in the result (and so in ``metrics.json``). Input ``images``, output ``logits``.

The model card ``MODEL.md`` is written by :mod:`cifar_search.train.model_card`.

Right after writing, each file is loaded back (``torch.export.load``; ``onnxruntime``) and run on
a batch; the largest absolute logit difference from the in-memory model and the fraction of
equal argmaxes are returned, and ``retrain`` stores them in ``metrics.json``.

Example:
    >>> result = export_model(model, cfg, "runs/cifar/trial-12")  # doctest: +SKIP
    >>> result.paths["onnx"], result.checks["onnx"]["max_abs_diff"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cifar_search.atomic import atomic_path
from cifar_search.errors import ConfigError
from cifar_search.train.config import TrainConfig
from cifar_search.train.evaluation import TTAModel

logger = logging.getLogger(__name__)

PT2 = "model.pt2"
ONNX = "model.onnx"
PT2_TTA = "model_tta.pt2"  # the model with its test-time augmentation inside (tta != "none")
ONNX_TTA = "model_tta.onnx"
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
    tta: bool = True,
) -> ExportResult:
    """Write ``model.pt2`` and ``model.onnx`` into ``out_dir`` and verify them; with
    ``cfg.tta`` other than ``"none"`` also ``model_tta.pt2`` and ``model_tta.onnx``.

    The model is copied to the CPU in float32 and eval mode first; the caller's model is left
    as it was.

    Args:
        model: A cifar-search model: float [0, 1] ``(B, 3, 32, 32)`` -> logits.
        cfg: Its config (the input size is checked against it).
        out_dir: Folder to write into (created if needed).
        images: Float [0, 1] ``(N, 3, 32, 32)`` images to verify on (default: a fixed random
            batch of :data:`CHECK_BATCH`).
        onnx: Also write the ONNX file(s).
        tta: Also write the TTA exports (:class:`~cifar_search.train.evaluation.TTAModel`) when the
            config has test-time augmentation.

    Returns:
        Paths and verification results per format (keys ``pt2``, ``onnx``, ``pt2_tta``,
        ``onnx_tta``) and notes.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    net = net.to(memory_format=torch.contiguous_format).eval()
    x = _check_images(images)
    out = ExportResult()
    _export_variant(net, x, folder / PT2, folder / ONNX if onnx else None, "", out)
    if tta and cfg.tta != "none":
        tta_net = TTAModel(net, cfg.tta).eval()
        _export_variant(tta_net, x, folder / PT2_TTA, folder / ONNX_TTA if onnx else None,
                        "_tta", out)
    else:  # an earlier export's TTA files would belong to another model
        for stale in (folder / PT2_TTA, folder / ONNX_TTA):
            stale.unlink(missing_ok=True)
    for name, check in out.checks.items():
        diff = check.get("max_abs_diff")
        if diff is not None and diff > TOLERANCE:
            logger.warning("%s export differs from the model by %.3g (logits)", name, diff)
    logger.info("exported %s (%s)", ", ".join(str(p) for p in out.paths.values()),
                cfg.model.family)
    return out


def _export_variant(
    net: nn.Module, x: Tensor, pt2: Path, onnx: Path | None, key: str, out: ExportResult
) -> None:
    """Write (atomically) and verify one module as ``pt2`` and ``onnx``; results go to ``out``
    under ``"pt2" + key`` and ``"onnx" + key``."""
    with torch.no_grad():
        expected = net(x).float()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.export.export(net, (x[:2],), dynamic_shapes=({0: batch},))
    with atomic_path(pt2) as tmp:
        torch.export.save(program, tmp)
    out.paths["pt2" + key] = pt2
    loaded = torch.export.load(pt2).module()
    with torch.no_grad():
        out.checks["pt2" + key] = _compare(expected, loaded(x))
    if onnx is None:
        return
    exporter = _export_onnx(program, net, x, onnx, out.notes)
    if exporter:
        out.paths["onnx" + key] = onnx
        out.checks["onnx" + key] = {"exporter": exporter,
                                    **_check_onnx(onnx, x, expected, out.notes)}


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
        with atomic_path(path) as tmp:
            onnx_program.save(str(tmp), external_data=False)
        return "dynamo"
    except Exception as exc:  # onnxscript missing, an op without a dynamo translation, ...
        reason = _first_line(exc)
        logger.warning("dynamo ONNX export of %s failed (%s); trying the legacy exporter",
                       path.name, reason)
        notes.append(f"{path.name}: dynamo export failed ({reason}); used the legacy exporter")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
            with atomic_path(path) as tmp:
                torch.onnx.export(net, (x[:2],), str(tmp), dynamo=False,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  dynamic_axes=axes)
        return "legacy"
    except Exception as exc:
        logger.warning("legacy ONNX export failed too: %s", exc)
        notes.append(f"{path.name}: not written, the legacy exporter failed too "
                     f"({type(exc).__name__})")
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
        notes.append(f"{path.name}: not verified (onnxruntime is not installed)")
        return {"max_abs_diff": None, "argmax_agreement": None, "images": 0}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    return _compare(expected, logits)
