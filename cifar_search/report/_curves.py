"""Learning curves of all trials and the Pareto front: few traces however many trials there are."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from cifar_search.report._format import fmt_value, table
from cifar_search.report._html import FigureRenderer, esc, note
from cifar_search.report._study_sections import pareto_trials
from cifar_search.report._trials import StudyData, curve_of, end_of

MAX_FAILED_ROWS = 50

# (label, states, RGB, dash): one scattergl trace per group, segments separated by NaN.
_GROUPS: tuple[tuple[str, tuple[TrialState, ...], str, str], ...] = (
    ("complete", (TrialState.COMPLETE,), "76,120,168", "solid"),
    ("pruned", (TrialState.PRUNED,), "245,133,24", "dot"),
    ("failed", (TrialState.FAIL,), "214,39,40", "dash"),
    ("running", (TrialState.RUNNING, TrialState.WAITING), "120,120,120", "solid"),
)
_HOVER = "trial %{customdata}<br>epoch %{x}<br>val acc %{y:.4f}<extra>%{fullData.name}</extra>"


def _segments(
    trials: list[FrozenTrial],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, float, int]]]:
    """Concatenate curves with NaN between them; also each curve's last point."""
    gap = np.full(1, math.nan)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    ends: list[tuple[float, float, int]] = []
    for t in trials:
        x, y = curve_of(t)
        if x.size == 0:
            continue
        xs += [x, gap]
        ys += [y, gap]
        ids += [np.full(x.size + 1, t.number, dtype=float)]
        ends.append((float(x[-1]), float(y[-1]), t.number))
    if not xs:
        return np.empty(0), np.empty(0), np.empty(0), []
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ids), ends


def _alpha(n: int) -> float:
    return 0.8 if n < 30 else 0.4 if n < 300 else 0.18


def learning_curves(data: StudyData, renderer: FigureRenderer) -> str:
    """Validation accuracy per epoch of every trial; pruned ones end early and are marked."""
    fig = go.Figure()
    counts: list[str] = []
    for label, states, rgb, dash in _GROUPS:
        group = data.with_state(*states)
        x, y, ids, ends = _segments(group)
        if not ends:
            continue
        counts.append(f"{len(ends)} {label}")
        line = {"color": f"rgba({rgb},{_alpha(len(ends))})", "width": 1.2, "dash": dash}
        fig.add_trace(go.Scattergl(x=x, y=y, customdata=ids, mode="lines", line=line,
                                   name=f"{label} ({len(ends)})", hovertemplate=_HOVER,
                                   connectgaps=False))
        if label != "complete":
            ex, ey, en = zip(*ends, strict=True)
            marker = {"symbol": "x", "size": 6, "color": f"rgb({rgb})"}
            fig.add_trace(go.Scattergl(x=ex, y=ey, customdata=en, mode="markers", marker=marker,
                                       name=f"{label}: last epoch", hovertemplate=_HOVER))
    best = data.best()
    if best is not None and curve_of(best)[0].size:
        bx, by = curve_of(best)
        fig.add_trace(
            go.Scatter(
                x=bx,
                y=by,
                mode="lines+markers",
                name=f"best: trial {best.number}",
                line={"color": "#111", "width": 3},
                marker={"size": 4},
            )
        )
    if not counts:
        body = note("No trial reported a validation accuracy yet.")
    else:
        fig.update_xaxes(title_text="epoch")
        fig.update_yaxes(title_text="validation accuracy")
        body = renderer.render(fig, height=480) + f"<p>Curves: {esc(', '.join(counts))}.</p>"
    return body + "\n" + failed_table(data)


def failed_table(data: StudyData) -> str:
    """The failed trials: how and when they ended."""
    failed = data.with_state(TrialState.FAIL)
    if not failed:
        return note("No failed trials.")
    rows = []
    for t in failed[:MAX_FAILED_ROWS]:
        _, y = curve_of(t)
        error = str(t.user_attrs.get("error", "") or "")
        rows.append(
            {
                "number": t.number,
                "end": end_of(t),
                "end_epoch": t.user_attrs.get("end_epoch"),
                "last val acc": fmt_value(float(y[-1]) if y.size else None),
                "error": error if len(error) <= 120 else error[:117] + "...",
            }
        )
    more = len(failed) - MAX_FAILED_ROWS
    tail = note(f"... and {more} more failed trials.") if more > 0 else ""
    opened = " open" if len(failed) <= 10 else ""
    return (
        f"<details{opened}><summary><b>Failed trials ({len(failed)})</b>: how and when they "
        f"ended</summary>\n{table(pd.DataFrame(rows))}{tail}</details>"
    )


def _log_axis(name: str, values: np.ndarray) -> bool:
    positive = values[np.isfinite(values)]
    if positive.size == 0 or positive.min() <= 0:
        return False
    return name.lower() in ("params", "n_params", "flops") or positive.max() / positive.min() > 100


def pareto(data: StudyData, renderer: FigureRenderer) -> str:
    """All complete trials in objective space, the non-dominated ones highlighted."""
    done = data.complete()
    if not done:
        return note("No complete trial yet: no Pareto front.")
    front = {t.number for t in pareto_trials(data)}
    values = np.asarray([t.values for t in done], dtype=float)
    numbers = np.asarray([t.number for t in done], dtype=float)
    on_front = np.asarray([t.number in front for t in done])
    names = data.objectives
    if len(names) == 2:
        fig = go.Figure()
        fig.add_trace(
            go.Scattergl(
                x=values[~on_front, 0],
                y=values[~on_front, 1],
                customdata=numbers[~on_front],
                mode="markers",
                name="dominated",
                marker={"color": "#9aa5b1", "size": 5},
                hovertemplate="trial %{customdata}<br>%{x}<br>%{y}<extra></extra>",
            )
        )
        order = np.argsort(values[on_front, 0])
        fig.add_trace(
            go.Scatter(
                x=values[on_front, 0][order],
                y=values[on_front, 1][order],
                customdata=numbers[on_front][order],
                mode="lines+markers",
                name=f"Pareto front ({int(on_front.sum())})",
                # the edge of the region the front dominates
                line={
                    "shape": "vh" if data.directions[0] == "maximize" else "hv",
                    "color": "#e45756",
                },
                marker={"size": 8},
                hovertemplate="trial %{customdata}<br>%{x}<br>%{y}<extra></extra>",
            )
        )
        x_log, y_log = (_log_axis(names[i], values[:, i]) for i in (0, 1))
        fig.update_xaxes(title_text=names[0], type="log" if x_log else None)
        fig.update_yaxes(title_text=names[1], type="log" if y_log else None)
        height = 480
    else:
        fig = go.Figure(
            go.Splom(
                dimensions=[{"label": n, "values": values[:, i]} for i, n in enumerate(names)],
                customdata=numbers,
                diagonal_visible=False,
                marker={"color": np.where(on_front, "#e45756", "#9aa5b1"), "size": 5},
            )
        )
        height = 250 * len(names)
    directions = ", ".join(f"{n}: {d}" for n, d in zip(names, data.directions, strict=True))
    return renderer.render(fig, height=height) + f"<p>{esc(directions)}.</p>"
