"""``build_report``: read the study once, build every section, write one HTML file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from cifar_search.atomic import atomic_write_text
from cifar_search.errors import StudyError
from cifar_search.report import _curves, _retrain, _study_sections
from cifar_search.report._html import FigureRenderer, Section, note, page
from cifar_search.report._trials import StudyData
from cifar_search.search import storage as storages

logger = logging.getLogger(__name__)


def _section(key: str, title: str, renderer: FigureRenderer, build: Callable[[], str]) -> Section:
    """Build one section; an unexpected error becomes a note instead of losing the page."""
    plots_before = renderer.count
    try:
        body = build()
    except Exception as exc:  # a report with one broken section beats no report at all
        logger.exception("report section %r failed", key)
        renderer.count = plots_before
        body = note(f"This section could not be built: {type(exc).__name__}: {exc}")
    return Section(key, title, body)


def _load(storage: str | optuna.storages.BaseStorage, study_name: str) -> optuna.Study:
    """The study, which must exist; a URL goes through :mod:`cifar_search.search.storage`."""
    if isinstance(storage, str):
        return storages.load_existing_study(storage, study_name)
    names = optuna.get_all_study_names(storage)
    if study_name not in names:
        known = ", ".join(names) if names else "none"
        where = type(storage).__name__
        raise StudyError(f"no study named {study_name!r} in {where} (studies there: {known}).")
    return optuna.load_study(study_name=study_name, storage=storage)


def build_report(
    storage: str | optuna.storages.BaseStorage,
    study_name: str,
    out: Path,
    runs_dir: Path | None = None,
) -> Path:
    """Write a self-contained offline HTML report of a study.

    The page holds: a summary, the optimisation history, parameter importances, parallel
    coordinates, learning curves of all trials, the Pareto front (multi-objective studies), the
    top trials and, for retrained models, training curves, confusion matrix, per-class accuracy
    and misclassified test images. A section without data shows a short note instead.

    Args:
        storage: Optuna storage URL, e.g. ``sqlite:///studies/cifar.db``, or a storage object.
        study_name: The study to report on.
        out: The HTML file to write (parent folders are created).
        runs_dir: Folder of retrain runs (each with ``metrics.json``), or ``None``.

    Returns:
        ``out``.

    Raises:
        StudyError: The study does not exist or the storage cannot be opened (a missing SQLite
            file is an error, never created).

    Example:
        >>> build_report("sqlite:///studies/cifar.db", "cifar", Path("r.html"))  # doctest: +SKIP
    """
    start = time.perf_counter()
    study = _load(storage, study_name)
    data = StudyData.read(study)
    logger.info("read %d trials in %.2f s", len(data.trials), time.perf_counter() - start)
    importances, reason = _study_sections.compute_importances(study, data)
    r = FigureRenderer()
    sections = [
        _section("summary", "Summary", r, lambda: _study_sections.summary(data)),
        _section("history", "Optimisation history", r, lambda: _study_sections.history(data, r)),
        _section(
            "importances",
            "Parameter importances",
            r,
            lambda: _study_sections.importances(importances, reason, r),
        ),
        _section(
            "parallel",
            "Parallel coordinates",
            r,
            lambda: _study_sections.parallel(data, importances, r),
        ),
        _section("curves", "Learning curves", r, lambda: _curves.learning_curves(data, r)),
    ]
    if data.multi:
        sections.append(_section("pareto", "Pareto front", r, lambda: _curves.pareto(data, r)))
    sections += [
        _section("top", "Top trials", r, lambda: _study_sections.top_trials(data, importances)),
        _section(
            "retrain",
            "Retrained models",
            r,
            lambda: _retrain.retrain_section(data, runs_dir, r),
        ),
    ]
    where = storage if isinstance(storage, str) else type(storage).__name__
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    subtitle = f"{len(data.trials)} trials · {', '.join(data.directions)} · {where} · {stamp}"
    html = page(f"cifar-search report: {study_name}", subtitle, sections, r.count)
    out = Path(out)
    atomic_write_text(out, html)  # a killed report leaves the previous one
    logger.info("wrote %s (%.1f MB) in %.2f s", out, len(html) / 1e6, time.perf_counter() - start)
    return out
