"""The Python API for notebooks and scripts: the same code paths as the CLI, without argparse.

    >>> import cifar_search
    >>> from cifar_search.api import auto, retrain
    >>> study = cifar_search.search(trials=20, budget="cpu")      # cifar-search run
    >>> result = retrain("best", study="cifar", epochs=15)        # ... retrain best
    >>> model, config, metrics = cifar_search.load_model(result.run_dir)
    >>> found = auto("10m")                                       # ... auto --time 10m

(``retrain`` and ``auto`` are not re-exported by the package: its modules of those names would
shadow them.)

Each function takes the options of its command as keyword arguments (the fields of
:class:`~cifar_search.launch.SearchSettings`, :class:`~cifar_search.retrain.RetrainSettings` and
:class:`~cifar_search.auto.AutoSettings`) and raises the typed errors of
:mod:`cifar_search.errors` where the CLI would print one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from cifar_search.auto import AutoResult
    from cifar_search.config import TrainConfig
    from cifar_search.retrain import RetrainResult


def search(**settings: Any) -> optuna.Study:
    """Run (or resume) a search, as ``cifar-search run``; returns the study.

    Keyword arguments are :class:`~cifar_search.launch.SearchSettings` fields, e.g.
    ``trials=200, budget="cpu", study="cifar", space="small", data=PATH``.
    """
    from cifar_search.launch import SearchSettings, prepare_search

    s = SearchSettings(**{"progress": False, **settings})
    found = prepare_search(s)
    found.run()
    return found.study


def retrain(which: str | int | None = None, *, preset: str | None = None,
            study: str | None = None, storage: str | None = None, epochs: int | None = None,
            **settings: Any) -> RetrainResult:
    """Retrain ``which`` (``"best"`` or a trial number) of ``study``, or ``preset``, on all
    training images; test once; export (as ``cifar-search retrain``). Other keyword arguments
    are :class:`~cifar_search.retrain.RetrainSettings` fields (``seeds``, ``out``, ``data``,
    ``device``, ``export``, ...)."""
    from cifar_search.retrain import RetrainSettings, resolve_target
    from cifar_search.retrain import retrain as run_retrain

    target = resolve_target(None if which is None else str(which), preset=preset, study=study,
                            storage=storage, epochs=epochs)
    return run_retrain(target, RetrainSettings(**settings))


def auto(time: str | float, **settings: Any) -> AutoResult:
    """``cifar-search auto --time T``: ``time`` in seconds or as ``"10m"``, ``"2h"``; other
    keyword arguments are :class:`~cifar_search.auto.AutoSettings` fields."""
    from cifar_search.auto import AutoSettings, run_auto
    from cifar_search.auto_plan import parse_duration

    seconds = parse_duration(time) if isinstance(time, str) else float(time)
    return run_auto(AutoSettings(time=seconds, **settings))


def load_model(directory: str | Path,
               device: str = "cpu") -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """A model folder (``train``, ``retrain`` or ``auto`` wrote it): ``(model in eval mode,
    config, metrics)``. The model takes float images in [0, 1], ``(B, 3, 32, 32)``."""
    from cifar_search.checkpoint import load_model_folder

    return load_model_folder(directory, device)
