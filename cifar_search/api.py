"""The Python API for notebooks and scripts: the same code paths as the CLI, without argparse.

Each function is named after the command it runs:

    >>> import cifar_search
    >>> study = cifar_search.run(trials=20, budget="cpu")                 # cifar-search run
    >>> result = cifar_search.retrain("best", study="cifar", epochs=15)  # ... retrain best
    >>> model, config, metrics = cifar_search.load_model(result.run_dir)
    >>> found = cifar_search.auto("10m")                                 # ... auto --time 10m

Each takes the options of its command as keyword arguments (the fields of
:class:`~cifar_search.search.launch.SearchSettings`,
:class:`~cifar_search.search.retrain.RetrainSettings` and
:class:`~cifar_search.search.auto.AutoSettings`) and raises the typed errors of
:mod:`cifar_search.errors` where the CLI would print one line. Torch and Optuna are imported
only when a function is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from cifar_search.search.auto import AutoResult
    from cifar_search.search.retrain import RetrainResult
    from cifar_search.train.config import TrainConfig


def run(**settings: Any) -> optuna.Study:
    """Run (or resume) a search, as ``cifar-search run``; returns the study.

    Keyword arguments are :class:`~cifar_search.search.launch.SearchSettings` fields, e.g.
    ``trials=200, budget="cpu", study="cifar", space="small", data=PATH``.
    """
    from cifar_search.search.launch import SearchSettings, prepare_search

    search = prepare_search(SearchSettings(**{"progress": False, **settings}))
    search.run()
    return search.study


def retrain(which: str | int | None = None, *, preset: str | None = None,
            study: str | None = None, storage: str | None = None, epochs: int | None = None,
            time: str | float | None = None, **settings: Any) -> RetrainResult:
    """Retrain ``which`` (``"best"`` or a trial number) of ``study``, or ``preset``, on all
    training images; test once; export (as ``cifar-search retrain``). ``time`` (seconds, or
    ``"10m"``, ``"2h"``) instead of ``epochs``: one training that fills it, everything included
    (as ``retrain --time``). Other keyword arguments are
    :class:`~cifar_search.search.retrain.RetrainSettings` fields (``seeds``, ``out``, ``data``,
    ``device``, ``export``, ...)."""
    import time as clock

    from cifar_search.errors import ConfigError
    from cifar_search.search import retrain as final
    from cifar_search.search.auto_plan import parse_duration
    from cifar_search.search.timed import within

    started = clock.monotonic()
    if time is not None and epochs is not None:
        raise ConfigError(f"give epochs or time, not both (got {epochs=} and {time=}).")
    target = final.resolve_target(None if which is None else str(which), preset=preset,
                                  study=study, storage=storage,
                                  epochs=1 if time is not None else epochs)
    s = final.RetrainSettings(**settings)
    if time is None:
        return final.retrain(target, s)
    seconds = parse_duration(time) if isinstance(time, str) else float(time)
    timed = within(target, s, seconds, started=started)
    return final.retrain(timed.target, timed.settings, arrays=timed.arrays)


def auto(time: str | float, **settings: Any) -> AutoResult:
    """``cifar-search auto --time T``: ``time`` in seconds or as ``"10m"``, ``"2h"``; other
    keyword arguments are :class:`~cifar_search.search.auto.AutoSettings` fields."""
    from cifar_search.search.auto import AutoSettings, run_auto
    from cifar_search.search.auto_plan import parse_duration

    seconds = parse_duration(time) if isinstance(time, str) else float(time)
    return run_auto(AutoSettings(time=seconds, **settings))


def load_model(directory: str | Path,
               device: str = "cpu") -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """A model folder (``train``, ``retrain`` or ``auto`` wrote it): ``(model in eval mode,
    config, metrics)``. The model takes float images in [0, 1], ``(B, 3, 32, 32)``."""
    from cifar_search.train.checkpoint import load_model_folder

    return load_model_folder(directory, device)
