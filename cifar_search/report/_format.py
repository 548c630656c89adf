"""Number formatting and subsampling shared by the sections."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cifar_search.report._html import esc

MAX_POINTS = 5000  # points per scatter before the history plots subsample


def fmt_seconds(seconds: float | None) -> str:
    """``3725`` -> ``"1 h 2 min"``; ``None`` -> ``"-"``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.1f} min"
    hours, rest = divmod(int(minutes), 60)
    if hours < 48:
        return f"{hours} h {rest} min"
    return f"{hours / 24:.1f} days"


def fmt_count(value: float | None) -> str:
    """``1234567`` -> ``"1.23M"``; ``None`` -> ``"-"``."""
    if value is None or not math.isfinite(value):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.4g}"


def fmt_value(value: float | None) -> str:
    """An objective value: 4 significant digits, or k/M/G past 10 000."""
    if value is None or not math.isfinite(value):
        return "-"
    return fmt_count(value) if abs(value) >= 1e4 else f"{value:.4g}"


def fmt_param(value: object) -> str:
    """A param value: floats with 4 significant digits, anything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def subsample(n: int, max_points: int = MAX_POINTS, keep: np.ndarray | None = None) -> np.ndarray:
    """Evenly spaced indices into ``n`` points, at most about ``max_points``, plus ``keep``.

    Args:
        n: Number of points.
        max_points: Budget; all indices are returned when ``n`` fits.
        keep: Indices that must stay (e.g. where the best value improved).

    Returns:
        Sorted unique indices.
    """
    if n <= max_points:
        return np.arange(n)
    idx = np.linspace(0, n - 1, max_points).round().astype(np.int64)
    if keep is not None and keep.size:
        idx = np.concatenate([idx, keep.astype(np.int64)])
    return np.unique(idx)


def table(df: pd.DataFrame) -> str:
    """A pandas frame as an escaped HTML table."""
    return str(df.to_html(index=False, escape=True, border=0, classes="data", na_rep="-"))


def cards(items: list[tuple[str, str]]) -> str:
    """A row of headline numbers: ``[(label, value), ...]``."""
    body = "".join(f'<div class="card"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in items)
    return f'<div class="cards">{body}</div>'
