"""cifar-search: find the best CIFAR-10 classifier a compute budget can buy.

The Python API (:mod:`cifar_search.api`) is named after the commands: ``run``, ``retrain``,
``auto`` and ``load_model``; torch and Optuna are imported only when one is called. The code
is in two packages split along the Optuna line: :mod:`cifar_search.train` (one config -> one
trained model, no Optuna) and :mod:`cifar_search.search` (everything that searches).
"""

from __future__ import annotations

from cifar_search._version import __version__
from cifar_search.api import auto, load_model, retrain, run
from cifar_search.train.config import AugmentConfig, ModelConfig, OptimConfig, TrainConfig

__all__ = ["AugmentConfig", "ModelConfig", "OptimConfig", "TrainConfig", "__version__", "auto",
           "load_model", "retrain", "run"]
