"""Retrained models: retrain records and run folders holding ``metrics.json``.

``cifar-search retrain`` records its results on the study (Optuna forbids changing a finished
trial): user attribute ``retrain:<trial number>`` or ``retrain:preset:<name>`` = ``{test_acc,
test_acc_mean, test_acc_std, test_acc_single..., seeds, run_dir, epochs, wall_seconds}``. A
trial user attribute ``retrain`` of the same form is read too. Folders under ``runs_dir``
holding a ``metrics.json`` are added even when no record names them.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cifar_search.report._format import fmt_seconds, fmt_value, table
from cifar_search.report._html import FigureRenderer, esc, note
from cifar_search.report._images import misclassified_grid
from cifar_search.report._trials import StudyData
from cifar_search.train.data import CLASSES

logger = logging.getLogger(__name__)

MAX_RUNS = 12
_SCAN_DEPTH = 2  # runs_dir/metrics.json, runs_dir/*/metrics.json, runs_dir/*/*/metrics.json


@dataclass
class Run:
    """A retrained model: where it lives, which trial it came from, what it measured."""

    name: str
    folder: Path | None = None
    trial: int | None = None
    retrain: dict[str, Any] = field(default_factory=dict)  # the retrain record
    metrics: dict[str, Any] = field(default_factory=dict)  # the folder's metrics.json
    problem: str = ""


def _records(data: StudyData) -> list[tuple[int | None, str, dict[str, Any]]]:
    """``(trial number, label, record)`` of every retrain record, study attributes first."""
    found: list[tuple[int | None, str, dict[str, Any]]] = []
    for key, record in sorted(data.user_attrs.items()):
        if not (key.startswith("retrain:") and isinstance(record, dict)):
            continue
        rest = key.removeprefix("retrain:")
        if rest.startswith("preset:"):
            found.append((None, f"preset {rest.removeprefix('preset:')}", record))
        elif rest.isdigit():
            found.append((int(rest), f"trial {rest}", record))
    for t in data.trials:
        record = t.user_attrs.get("retrain")
        if isinstance(record, dict):
            found.append((t.number, f"trial {t.number}", record))
    return found


def find_runs(data: StudyData, runs_dir: Path | None) -> list[Run]:
    """Runs named by retrain records, then other folders with a metrics.json under ``runs_dir``."""
    runs: dict[str, Run] = {}
    for number, label, record in _records(data):
        folder = _resolve(record.get("run_dir"), runs_dir)
        key = str(folder.resolve()) if folder else label
        name = folder.name if folder else label
        runs.setdefault(key, Run(name=name, folder=folder, trial=number, retrain=record))
    if runs_dir is not None and runs_dir.is_dir():
        for path in _metrics_files(runs_dir):
            key = str(path.parent.resolve())
            runs.setdefault(key, Run(name=path.parent.name, folder=path.parent))
    for run in runs.values():
        _read_metrics(run)
    return list(runs.values())


def _resolve(run_dir: object, runs_dir: Path | None) -> Path | None:
    if not isinstance(run_dir, str) or not run_dir:
        return None
    path = Path(run_dir)
    if path.is_dir() or runs_dir is None:
        return path
    other = runs_dir / path.name
    return other if other.is_dir() else path


def _metrics_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for depth in range(_SCAN_DEPTH + 1):
        found += sorted(root.glob("/".join(["*"] * depth + ["metrics.json"])))
    return found


def _read_metrics(run: Run) -> None:
    if run.folder is None:
        run.problem = "the retrain record names no run folder"
        return
    path = run.folder / "metrics.json"
    if not path.is_file():
        run.problem = f"no metrics.json in {run.folder}"
        return
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        run.problem = f"unreadable {path}: {exc}"
        return
    if isinstance(metrics, dict):
        run.metrics = metrics
    else:
        run.problem = f"{path} does not hold a JSON object"


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def overview(runs: list[Run]) -> str:
    """One row per run: test accuracy over seeds (with the config's test-time augmentation, and
    with one view per image: what ``model.onnx`` gives), best validation accuracy, time."""
    rows = []
    for run in runs:
        m, r = run.metrics, run.retrain
        mean = _num(m.get("test_acc_mean", r.get("test_acc_mean")))
        std = _num(m.get("test_acc_std", r.get("test_acc_std")))
        seeds = r.get("seeds") or m.get("test_acc") or []
        per_seed = _list(m.get("test_acc", r.get("test_acc")))
        single = _num(m.get("test_acc_single_mean", r.get("test_acc_single_mean")))
        tta = m.get("config", {}).get("tta") if isinstance(m.get("config"), dict) else None
        epochs = _list(m.get("epochs"))
        found = (_num(e.get("val_acc")) for e in epochs if isinstance(e, dict))
        val = [v for v in found if v is not None]
        rows.append(
            {
                "run": run.name,
                "trial": run.trial,
                "test acc mean": fmt_value(mean),
                "test acc std": fmt_value(std),
                "seeds": len(seeds) if isinstance(seeds, list) else "-",
                "test acc per seed": " ".join(fmt_value(_num(a)) for a in per_seed) or "-",
                "test-time augmentation": tta or "-",
                "test acc mean, one view": fmt_value(single),
                "best val acc": fmt_value(max(val) if val else None),
                "epochs": len(epochs) or "-",
                "wall time": fmt_seconds(_num(m.get("wall_seconds"))),
                "device": m.get("device", "-"),
            }
        )
    df = pd.DataFrame(rows)
    df["trial"] = df["trial"].astype("Int64")
    return table(df)


def run_detail(run: Run, renderer: FigureRenderer) -> str:
    """Training curves, confusion matrix, per-class accuracy, misclassified images of one run."""
    title = f"<h3>{esc(run.name)}" + (f" (trial {run.trial})" if run.trial is not None else "")
    parts = [title + "</h3>"]
    if run.folder is not None:
        parts.append(f"<p>Folder: <code>{esc(run.folder)}</code></p>")
    if run.problem:
        parts.append(note(run.problem.capitalize() + "."))
        return "\n".join(parts)
    classes = run.metrics.get("classes")
    if not (isinstance(classes, list) and len(classes) == 10):
        classes = list(CLASSES)
    parts += [
        _training_curves(run.metrics.get("epochs"), renderer),
        _confusion(run.metrics, classes, renderer),
        misclassified_grid(run.folder / "misclassified.npz" if run.folder else None, classes),
    ]
    return "\n".join(parts)


def _training_curves(epochs: object, renderer: FigureRenderer) -> str:
    if not isinstance(epochs, list) or not epochs:
        return note("No per-epoch metrics in metrics.json.")
    df = pd.DataFrame([e for e in epochs if isinstance(e, dict)])
    if "epoch" not in df:
        df["epoch"] = np.arange(1, len(df) + 1)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("loss", "accuracy", "learning rate"))
    colors = {"train": "#4c78a8", "val": "#e45756"}
    for col, metric in ((1, "loss"), (2, "acc")):
        for split, color in colors.items():
            key = f"{split}_{metric}"
            if key in df:
                fig.add_trace(
                    go.Scatter(
                        x=df["epoch"],
                        y=df[key],
                        name=key,
                        mode="lines+markers",
                        line={"color": color},
                        marker={"size": 4},
                    ),
                    row=1,
                    col=col,
                )
    if "lr" in df:
        fig.add_trace(
            go.Scatter(x=df["epoch"], y=df["lr"], name="lr", line={"color": "#54a24b"}),
            row=1,
            col=3,
        )
    fig.update_xaxes(title_text="epoch")
    return renderer.render(fig, height=340)


def _confusion(metrics: dict[str, Any], classes: list[str], renderer: FigureRenderer) -> str:
    matrix = metrics.get("confusion_matrix")
    per_class = metrics.get("per_class_acc")
    try:
        cm = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        cm = np.empty(0)
    ok_cm = cm.shape == (10, 10)
    ok_pc = isinstance(per_class, list) and len(per_class) == 10
    if not ok_pc and ok_cm:
        per_class = list(np.diag(cm) / np.maximum(cm.sum(axis=1), 1))
        ok_pc = True
    if not (ok_cm or ok_pc):
        return note("No confusion matrix or per-class accuracy in metrics.json.")
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.58, 0.42],
        subplot_titles=("confusion matrix (rows: true, columns: predicted)", "per-class accuracy"),
    )
    if ok_cm:
        fig.add_trace(
            go.Heatmap(
                z=cm,
                x=classes,
                y=classes,
                colorscale="Blues",
                showscale=False,
                texttemplate="%{z:.0f}",
                hovertemplate="true %{y}<br>pred %{x}<br>%{z}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=1)
    if ok_pc:
        values = [math.nan if _num(v) is None else float(v) for v in per_class]  # type: ignore[union-attr]
        fig.add_trace(
            go.Bar(
                x=values,
                y=classes,
                orientation="h",
                marker={"color": "#4c78a8"},
                text=[f"{v:.3f}" for v in values],
                textposition="auto",
                showlegend=False,
            ),
            row=1,
            col=2,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=2)
    return renderer.render(fig, height=470)


def retrain_section(data: StudyData, runs_dir: Path | None, renderer: FigureRenderer) -> str:
    """The whole retrained-models section."""
    runs = find_runs(data, runs_dir)
    if not runs:
        where = f" and no run folder with metrics.json under {runs_dir}" if runs_dir else ""
        return note(f"No retrained model: no retrain record in the study{where}.")
    parts = [overview(runs)]
    for run in runs[:MAX_RUNS]:
        plots_before = renderer.count
        try:
            parts.append(run_detail(run, renderer))
        except Exception as exc:  # one odd metrics.json must not hide the other runs
            logger.warning("run %s could not be shown: %s", run.name, exc)
            renderer.count = plots_before
            parts.append(note(f"Run {run.name} could not be shown: {type(exc).__name__}: {exc}"))
    if len(runs) > MAX_RUNS:
        parts.append(note(f"Details shown for the first {MAX_RUNS} of {len(runs)} runs."))
    return "\n".join(parts)
