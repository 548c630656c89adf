"""Sections about the search: summary, history, importances, parallel coordinates, top trials."""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from cifar_search.report._format import (
    MAX_POINTS,
    cards,
    fmt_count,
    fmt_param,
    fmt_seconds,
    fmt_value,
    subsample,
    table,
)
from cifar_search.report._html import FigureRenderer, esc, note
from cifar_search.report._trials import (
    StudyData,
    curve_of,
    duration_s,
    end_of,
    family_of,
    number_attr,
)

logger = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 8  # complete trials
MAX_PARCOORDS_DIMS = 8
MAX_TOP_ROWS = 20
MAX_KEY_PARAMS = 6


def summary(data: StudyData) -> str:
    """Counts by state and by ``end``, best value, time spent."""
    states = data.state_counts()
    best = data.best()
    durations = [d for d in map(duration_s, data.trials) if d is not None]
    starts = [t.datetime_start for t in data.trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in data.trials if t.datetime_complete is not None]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    train = [s for s in (number_attr(t, "train_seconds") for t in data.trials) if s is not None]
    headline = [
        ("trials", str(len(data.trials))),
        *[(name.lower(), str(states.get(name, 0))) for name in ("COMPLETE", "PRUNED", "FAIL")],
    ]
    if data.multi:
        headline.append(("Pareto-optimal", str(len(pareto_trials(data)))))
    else:
        headline.append((f"best {data.objectives[0]}", fmt_value(best.value if best else None)))
    headline += [
        ("trial time (sum)", fmt_seconds(sum(durations) if durations else None)),
        ("wall time", fmt_seconds(wall)),
        ("training time (sum)", fmt_seconds(sum(train) if train else None)),
    ]
    by_state = pd.DataFrame(sorted(states.items()), columns=["state", "trials"])
    by_end = pd.DataFrame(sorted(data.end_counts().items()), columns=["end", "trials"])
    parts = [cards(headline), '<div class="cards">', table(by_state), table(by_end), "</div>"]
    if best is not None:
        values = ", ".join(
            f"{n} = {fmt_value(v)}" for n, v in zip(data.objectives, best.values, strict=False)
        )
        params = ", ".join(f"{k}={fmt_param(v)}" for k, v in sorted(best.params.items()))
        by = f" by {data.objectives[0]}" if data.multi else ""
        parts.append(
            f"<p>Best trial{esc(by)}: #{best.number}, {esc(values)}. "
            f"Params: {esc(params or '-')}</p>"
        )
    else:
        parts.append(note("No complete trial yet."))
    auto = data.user_attrs.get("auto")
    if isinstance(auto, dict):
        parts.append(auto_plan_note(auto))
    return "\n".join(parts)


def auto_plan_note(auto: dict[str, Any]) -> str:
    """What ``cifar-search auto`` planned and how well each rung predicted the next."""
    plan: dict[str, Any] = auto.get("plan") or {}
    final: dict[str, Any] = auto.get("final") or {}
    rhos: list[float | None] = auto.get("rank_correlation") or []
    rho = ", ".join("n/a" if r is None else f"{r:.2f}" for r in rhos) or "n/a"
    tested = f", test accuracy {100 * final['test_acc']:.2f}%" if "test_acc" in final else ""
    return (f"<p>auto --time {fmt_seconds(auto.get('time_s'))} (spent "
            f"{fmt_seconds(auto.get('spent_s'))}): {esc(str(plan.get('reason', '')))}. "
            f"Rank correlation between rungs (Spearman): {esc(rho)}. Final training: "
            f"{esc(str(final.get('winner', 'not yet')))}{tested}.</p>")


def history(data: StudyData, renderer: FigureRenderer) -> str:
    """Objective value per trial number, with the best so far."""
    done = data.complete()
    if not done:
        return note("No complete trial yet: nothing to plot.")
    n_obj = len(data.directions)
    fig = make_subplots(rows=n_obj, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    numbers = np.asarray([t.number for t in done])
    shown = len(done)
    for i, (name, direction) in enumerate(zip(data.objectives, data.directions, strict=True)):
        values = np.asarray([t.values[i] for t in done], dtype=float)
        best = (np.maximum if direction == "maximize" else np.minimum).accumulate(values)
        improved = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
        idx = subsample(len(done), MAX_POINTS, keep=improved)
        shown = len(idx)
        fig.add_trace(
            go.Scattergl(
                x=numbers[idx],
                y=values[idx],
                mode="markers",
                name=name,
                marker={"size": 4, "opacity": 0.6, "color": "#4c78a8"},
                showlegend=i == 0,
            ),
            row=i + 1,
            col=1,
        )
        step_x = np.r_[numbers[improved], numbers[-1]]
        step_y = np.r_[best[improved], best[-1]]
        fig.add_trace(
            go.Scatter(
                x=step_x,
                y=step_y,
                mode="lines",
                line={"shape": "hv", "color": "#e45756"},
                name="best so far",
                showlegend=i == 0,
            ),
            row=i + 1,
            col=1,
        )
        fig.update_yaxes(title_text=name, row=i + 1, col=1)
    fig.update_xaxes(title_text="trial number", row=n_obj, col=1)
    parts = [renderer.render(fig, height=320 + 180 * (n_obj - 1))]
    if shown < len(done):
        parts.append(note(f"Showing {shown} of {len(done)} complete trials (subsampled)."))
    return "\n".join(parts)


def compute_importances(study: optuna.Study, data: StudyData) -> tuple[dict[str, float], str]:
    """Parameter importances (optuna's default evaluator), or ``({}, reason)``."""
    done = data.complete()
    names = {k for t in done for k in t.params}
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, (
            f"Parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials; "
            f"this study has {len(done)}."
        )
    if len(names) < 2:
        return {}, f"Parameter importances need at least 2 parameters; found {sorted(names)}."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study)), ""
    except (ValueError, RuntimeError, ZeroDivisionError, TypeError) as exc:
        logger.warning("parameter importances failed: %s", exc)
        return {}, f"Parameter importances could not be computed: {exc}"


def importances(found: dict[str, float], reason: str, renderer: FigureRenderer) -> str:
    """Horizontal bars of the importances."""
    if not found:
        return note(reason or "No parameter importances.")
    items = sorted(found.items(), key=lambda kv: kv[1])[-25:]
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[k for k, _ in items],
            orientation="h",
            marker={"color": "#4c78a8"},
        )
    )
    fig.update_xaxes(title_text="importance (normalised)")
    return renderer.render(fig, height=max(260, 24 * len(items) + 80))


def _key_params(done: list[FrozenTrial], found: dict[str, float], limit: int) -> list[str]:
    if found:
        return list(found)[:limit]
    counts = Counter(k for t in done for k in t.params)
    return [k for k, _ in counts.most_common(limit)]


def _dimension(name: str, trials: list[FrozenTrial]) -> dict[str, object] | None:
    values = [t.params.get(name) for t in trials]
    present = [v for v in values if v is not None]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric and present:
        dist = next((t.distributions[name] for t in trials if name in t.distributions), None)
        log = bool(getattr(dist, "log", False)) and min(present) > 0
        arr = np.asarray([math.nan if v is None else float(v) for v in values])
        if log:
            arr = np.log10(arr)
        return {"label": f"log10 {name}" if log else name, "values": arr}
    labels = sorted({str(v) for v in present}) + (["n/a"] if len(present) < len(values) else [])
    if len(labels) > 30:
        return None
    index = {s: i for i, s in enumerate(labels)}
    codes = [index["n/a" if v is None else str(v)] for v in values]
    return {
        "label": name,
        "values": codes,
        "tickvals": list(range(len(labels))),
        "ticktext": labels,
    }


def parallel(data: StudyData, found: dict[str, float], renderer: FigureRenderer) -> str:
    """Parallel coordinates of the key params and the first objective, complete trials only."""
    done = data.complete()
    if not done:
        return note("No complete trial yet.")
    names = _key_params(done, found, 3 * MAX_PARCOORDS_DIMS)
    # Numeric params missing from a trial would drop its line: use those present in most trials.
    chosen, rows = [], done
    for name in names:
        present = [t for t in rows if name in t.params]
        numeric = all(
            isinstance(t.params[name], (int, float)) and not isinstance(t.params[name], bool)
            for t in present
        )
        if numeric and len(present) < 0.8 * len(rows):
            continue
        chosen.append(name)
        rows = present if numeric else rows
        if len(chosen) == MAX_PARCOORDS_DIMS:
            break
    if not chosen:
        return note("No parameters to show.")
    dims = [d for d in (_dimension(n, rows) for n in chosen) if d is not None]
    value = np.asarray([t.values[0] for t in rows], dtype=float)
    dims.append({"label": data.objectives[0], "values": value})
    fig = go.Figure(
        go.Parcoords(
            line={"color": value, "colorscale": "Viridis", "showscale": True},
            dimensions=dims,
        )
    )
    parts = [renderer.render(fig, height=460)]
    if len(rows) < len(done):
        parts.append(note(f"{len(rows)} of {len(done)} complete trials have all these params."))
    return "\n".join(parts)


def top_trials(data: StudyData, found: dict[str, float]) -> str:
    """The best complete trials (the Pareto set for multi-objective studies) as a table."""
    if data.multi:
        rows = pareto_trials(data)
        title = "Pareto-optimal trials, sorted by the first objective."
    else:
        rows = data.complete()
        title = f"Top {MAX_TOP_ROWS} complete trials."
    if not rows:
        return note("No complete trial yet.")
    sign = 1.0 if data.directions[0] == "maximize" else -1.0
    rows = sorted(rows, key=lambda t: -sign * t.values[0])[:MAX_TOP_ROWS]
    keys = _key_params(rows, found, MAX_KEY_PARAMS)
    records = []
    for t in rows:
        record: dict[str, object] = {"number": t.number}
        for name, v in zip(data.objectives, t.values, strict=False):
            record[name] = fmt_value(v)
        record |= {
            "state": t.state.name,
            "end": end_of(t),
            "family": family_of(t),
            "n_params": fmt_count(number_attr(t, "n_params")),
            "flops": fmt_count(number_attr(t, "flops")),
            "epochs_run": int(number_attr(t, "epochs_run") or len(curve_of(t)[0])) or "-",
            "train_seconds": fmt_seconds(number_attr(t, "train_seconds")),
        }
        record |= {k: fmt_param(t.params[k]) if k in t.params else None for k in keys}
        records.append(record)
    df = pd.DataFrame.from_records(records)
    return f"<p>{title}</p>\n{table(df)}"


def pareto_trials(data: StudyData) -> list[FrozenTrial]:
    """Non-dominated complete trials (all objectives, directions respected)."""
    done = data.complete()
    if not done:
        return []
    signs = np.asarray([1.0 if d == "minimize" else -1.0 for d in data.directions])
    loss = np.asarray([t.values for t in done], dtype=float) * signs  # lower is better
    order = np.lexsort(loss.T[::-1])
    loss_sorted = loss[order]
    keep: list[int] = []
    front = np.empty((0, loss.shape[1]))
    for i, row in enumerate(loss_sorted):
        dominated = np.any(np.all(front <= row, axis=1) & np.any(front < row, axis=1))
        if not dominated:
            keep.append(int(order[i]))
            front = np.vstack([front, row])
    return sorted((done[i] for i in keep), key=lambda t: t.number)
